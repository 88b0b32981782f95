"""What a warm worker and its clients share: the environment variables that name a worker or turn
workers off, the messages (one JSON object per line; the request carries the client's stdin,
stdout and stderr), and which environment variables a run may set differently from its worker."""
from __future__ import annotations

import json
import os
import socket
from typing import Mapping

SOCKET_ENV = "PROMPTLAB_WORKER"  # the socket of the worker that serves this process's train.py commands
RUN_STOP_GRACE_S = 10.0  # a stopping worker's runs get this long after SIGTERM, all together
WARM_ENV = "PROMPTLAB_WARM"  # "0": every run starts as its own process (tools/sweep.py --no-warm)

# Read only while a run runs (by our code or the scripts), so a run may set them differently from
# the worker; every other variable may have been read by the worker's imports (OMP_NUM_THREADS,
# HF_HUB_OFFLINE, PYTHONHASHSEED, ...) and must be the worker's, or the run starts as its own process.
RUN_TIME_VARIABLES = frozenset({
    "DATA", "OUTPUT", "SHOTS", "NPROC", "PYTHON", "PRINT_RUNS",
    "PROMPTLAB_TRAINER_FILES", "PROMPTLAB_CACHE", "PROMPTLAB_DEBUG", SOCKET_ENV, WARM_ENV,
    "PWD", "OLDPWD", "SHLVL", "_", "COLUMNS", "LINES",
})


def warm_enabled(env: Mapping[str, str] = os.environ) -> bool:
    return env.get(WARM_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def env_differences(worker: Mapping[str, str], run: Mapping[str, str]) -> list[str]:
    """Variables outside RUN_TIME_VARIABLES that the run sets differently from the worker."""
    names = (set(worker) | set(run)) - RUN_TIME_VARIABLES
    return sorted(n for n in names if worker.get(n) != run.get(n))


def send(sock: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = (json.dumps(message) + "\n").encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


class Reader:
    """Messages from a stream socket, one per line; the file descriptors that came with them."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = b""
        self.fds: list[int] = []

    def next(self, max_fds: int = 0) -> dict | None:
        """The next message, or None when the other side has closed the connection."""
        while b"\n" not in self.buffer:
            if max_fds:
                data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, max_fds)
                self.fds += fds
            else:
                data = self.sock.recv(1 << 16)
            if not data:
                return None
            self.buffer += data
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

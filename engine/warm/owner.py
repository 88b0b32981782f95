"""Starting and stopping a warm worker (server.py) for the commands a process launches: the local
sweep keeps one per job slot, a SLURM job one for its chain, and `run_with_worker` (tools/warm.py)
one for any command. The commands reach it through $PROMPTLAB_WORKER (`env_for_commands()`), which
scripts/common.sh's run_job passes to the client."""
from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Mapping

from engine.warm.protocol import RUN_STOP_GRACE_S, SOCKET_ENV, WARM_ENV, warm_enabled

REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 600.0
STOP_GRACE_S = RUN_STOP_GRACE_S  # the worker's own stop: its runs' grace, then it exits


def unusable(env: Mapping[str, str]) -> str | None:
    """Why commands run with `env` cannot use a worker of this interpreter, or None."""
    if not warm_enabled(env):
        return f"{WARM_ENV}={env[WARM_ENV]}"
    python = env.get("PYTHON")
    if python:
        found = shutil.which(python)
        if found is None or os.path.realpath(found) != os.path.realpath(sys.executable):
            return f"PYTHON={python} is not this interpreter ({sys.executable})"
    if not hasattr(os, "fork"):
        return "this system has no fork"
    if env.get("NPROC", "1") not in ("", "1"):
        return f"NPROC={env['NPROC']}: torchrun starts each run's processes (scripts/common.sh)"
    return None


class WarmWorker:
    """A worker process serving on a private socket; its console goes to `log`."""

    def __init__(self, env: Mapping[str, str], log: Path):
        self.env = dict(env)
        self.log = Path(log)
        self.folder = Path(tempfile.mkdtemp(prefix="promptlab-warm-", dir="/tmp" if len(tempfile.gettempdir()) > 60 else None))
        self.socket = self.folder / "worker.sock"
        self.proc: subprocess.Popen | None = None
        self._ready_fd: int | None = None
        self.ready = False

    def start(self) -> "WarmWorker":
        """Start the worker (its imports take seconds: `wait_ready` waits for them)."""
        read, write = os.pipe()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "engine.warm.server", "--socket", str(self.socket), "--ready-fd", str(write)],
                cwd=REPO, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(write,))
        os.close(write)
        self._ready_fd = read
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> bool:
        """Whether the worker serves (False if it failed to start: its log says why)."""
        if self._ready_fd is not None:
            ready, _, _ = select.select([self._ready_fd], [], [], timeout_s)
            self.ready = bool(ready) and os.read(self._ready_fd, 16).startswith(b"ready")
            os.close(self._ready_fd)
            self._ready_fd = None
        return self.ready and self.alive()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def env_for_commands(self) -> dict[str, str]:
        """What a command needs in its environment to run in this worker."""
        return {SOCKET_ENV: str(self.socket)}

    def stop(self) -> None:
        """Stop the worker (and any run it still serves), and remove its socket."""
        if self._ready_fd is not None:
            os.close(self._ready_fd)
            self._ready_fd = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_GRACE_S + 5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def run_with_worker(command: list[str], log: Path) -> int:
    """Run `command` (e.g. a method's script) with a warm worker for its train.py runs; its exit
    status. Without a usable worker the command runs as it would alone."""
    env = dict(os.environ)
    why_not = unusable(env)
    worker = None if why_not else WarmWorker(env, log).start()
    if worker is not None and not worker.wait_ready():
        why_not = f"the worker did not start (its log: {log})"
    if why_not:
        print(f"note: no warm worker ({why_not}); runs start as their own processes", file=sys.stderr, flush=True)
    extra = worker.env_for_commands() if worker is not None and not why_not else {}
    proc = subprocess.Popen(command, env={**env, **extra})
    forwarded = {sig: signal.signal(sig, lambda signum, frame: proc.send_signal(signum))
                 for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:  # Ctrl-C reached the command too (same terminal): wait for it
                continue
    finally:
        for sig, handler in forwarded.items():
            signal.signal(sig, handler)
        if worker is not None:
            worker.stop()

"""`python -m engine.warm.client train.py ARGS...`: run a train.py command in the warm worker named
by $PROMPTLAB_WORKER, as if it were `python train.py ARGS...` (scripts/common.sh's run_job).

This process stands in for the run: the run writes to this process's stdout and stderr, works in
its folder with its environment, and this process exits with the run's status (or dies of the
run's signal). Signals sent to it (SIGTERM from a stopping sweep, Ctrl-C, SLURM's) go to the run
and its children; if it is killed outright, the worker sees the connection drop and kills the run.
Where no worker answers, or the worker cannot serve the command exactly as a new process would,
one line on stderr says why and this process becomes `python train.py ARGS...` (exec).
Standard library only: it starts in a few tens of milliseconds.
"""
from __future__ import annotations

import os
import signal
import socket
import sys

from engine.processes import signal_tree
from engine.warm.protocol import SOCKET_ENV, Reader, send, warm_enabled

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
STARTED_TIMEOUT_S = 900.0  # the worker reads the run's weights before it starts it; a stuck worker is left


def run_fresh(argv: list[str], why: str = "") -> None:
    """Become `python train.py ...` (same PID, streams, folder and environment)."""
    if why:
        print(f"note: {why}; train.py runs as its own process", file=sys.stderr, flush=True)
    os.execv(sys.executable, [sys.executable, *argv])


def connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def main(argv: list[str]) -> None:
    path = os.environ.get(SOCKET_ENV, "")
    if not path or not warm_enabled():
        run_fresh(argv)
    sock = connect(path)
    if sock is None:
        run_fresh(argv, f"no warm worker answers at {path} (${SOCKET_ENV})")
    request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}
    send(sock, request, fds=[0, 1, 2])
    reader = Reader(sock)
    sock.settimeout(STARTED_TIMEOUT_S)
    try:
        reply = reader.next()
    except (OSError, ValueError):
        reply = None
    if reply is None or "refused" in reply:
        sock.close()  # a run the worker started after all dies with the connection
        run_fresh(argv, f"the warm worker did not start the run ({reply['refused'] if reply else 'no answer'})")
    run = int(reply["started"])
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, frame: signal_tree(run, signum))
    sock.settimeout(None)
    done = reader.next()  # a forwarded signal does not interrupt the wait (PEP 475)
    if done is None:
        print(f"error: the warm worker ({path}) stopped before run {run} ended, which stopped it too; rerun to "
              "resume it", file=sys.stderr, flush=True)
        sys.exit(1)
    code = int(done["exit"])
    if code < 0:  # killed by a signal: die of it too, as the train.py process did
        sys.stdout.flush()
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # those two have no handler to reset
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code
    sys.exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])

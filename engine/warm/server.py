"""`python -m engine.warm.server --socket PATH [--ready-fd FD]`: a warm worker (engine/warm/__init__.py;
started by engine/warm/owner.py, from the repository root).

The worker imports what train.py imports, then serves `train.py` commands on the socket, one forked
process per run. Before it forks it only reads files: a run's backbone weights, held for every
later run while the file's identity (device, inode, size, mtime, ctime) is unchanged; nothing that
starts threads, OpenMP work or CUDA. It refuses a command it cannot serve as a new process would
(the client then runs it as its own process):
  - another environment, in a variable outside protocol.RUN_TIME_VARIABLES (read by imports);
  - a train.py of another checkout, or any imported source file changed since the worker started
    (the worker then stops taking commands, so its owner starts a new one);
  - a thread or CUDA context that appeared in the worker (a bug: it stops taking commands too).
It stops (its runs with it) on SIGTERM, SIGINT or SIGHUP, and when the process that started it dies.
"""
from __future__ import annotations

import argparse
import atexit
import ctypes
import io
import os
import random
import runpy
import select
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from engine.cache import file_identity
from engine.processes import signal_tree, stop_trees
from engine.warm.protocol import RUN_STOP_GRACE_S, Reader, env_differences, send

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "train.py"
STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
POLL_S = 0.2
REQUEST_TIMEOUT_S = 10.0


def thread_count() -> int:
    """Threads of this process, native ones included (numpy's OpenBLAS starts its pool on import and
    stops it at the first fork)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def source_files() -> dict[str, tuple[int, ...]]:
    """The identity (engine.cache.file_identity) of every imported module's file."""
    out = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path not in out:
            try:
                out[path] = file_identity(path)
            except OSError:
                continue
    return out


def weights_to_hold(argv: list[str], cwd: str) -> str | None:
    """The weights file a train.py command will read, if this process can tell without running
    anything (not for trainer files written for Dassl, whose config keys it does not know)."""
    from backbone.loader import weights_file
    from engine.launch import parse_args, setup_cfg

    here = os.getcwd()
    try:
        os.chdir(cwd)
        args = parse_args(argv[1:])
        if args.trainer_file:
            return None
        cfg = setup_cfg(args)
        return weights_file(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PRETRAINED)
    except (Exception, SystemExit):  # the run itself will say what is wrong with the command
        return None
    finally:
        os.chdir(here)


def die_with(parent: int) -> None:
    """SIGKILL this process when `parent` dies (Linux), so that no run outlives its worker unseen."""
    try:
        ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(1)


def reopen_stdio() -> None:
    """sys.stdin/stdout/stderr anew over fds 0-2, as the interpreter makes them at start-up: stdout
    line-buffered on a terminal and block-buffered otherwise, stderr line-buffered, newlines kept, the
    interpreter's encoding and unbuffered setting (-u, PYTHONUNBUFFERED) kept."""
    new = []
    for fd, old in enumerate((sys.__stdin__, sys.__stdout__, sys.__stderr__)):
        write = fd > 0
        unbuffered = write and old.write_through
        buffer = io.open(fd, "wb" if write else "rb", buffering=0 if unbuffered else -1, closefd=False)
        raw = buffer if unbuffered else buffer.raw
        raw.name = ("<stdin>", "<stdout>", "<stderr>")[fd]
        stream = io.TextIOWrapper(buffer, encoding=old.encoding, errors=old.errors, newline="\n",
                                  line_buffering=not unbuffered and (raw.isatty() or fd == 2),
                                  write_through=unbuffered)
        stream.mode = "w" if write else "r"
        new.append(stream)
    sys.stdin, sys.stdout, sys.stderr = new
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = new


def run_as_main(script: Path) -> int:
    """Run `script` as __main__; the exit status the interpreter would give (minus a signal it
    would die of), an uncaught exception's traceback printed as it would print it."""
    try:
        runpy.run_path(str(script), run_name="__main__")
        return 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except BaseException as e:  # noqa: B036 (the interpreter's own last resort)
        tb = e.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != str(script):
            tb = tb.tb_next  # from train.py's frame on, as `python train.py` shows it
        e.__traceback__ = tb or e.__traceback__  # the hook prints the exception's own traceback
        sys.excepthook(type(e), e, e.__traceback__)
        return -signal.SIGINT if isinstance(e, KeyboardInterrupt) else 1


def end_process(code: int) -> None:
    """End a run as the interpreter ends a process (non-daemon threads joined, atexit handlers run,
    the streams flushed), without tearing down the modules it inherited from the worker: seconds of
    work (every object's page copied back from the fork) that changes no file. multiprocessing ends
    its forked children this way too."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    if code < 0:  # an uncaught KeyboardInterrupt: the interpreter dies of SIGINT
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code & 0xFF)


class Worker:
    """The serving process: its imports, the sources they came from, its start-up state (threads,
    environment, signal handlers), the listening socket, and the runs it has forked."""

    def __init__(self, socket_path: str):
        self.pid = os.getpid()
        self.owner = os.getppid()
        self.env = dict(os.environ)
        self.socket_path = socket_path
        self.startup_signals = {sig: signal.getsignal(sig) for sig in STOPS}
        started = time.perf_counter()
        import numpy
        import torch

        import train  # noqa: F401  (what train.py imports, in its order)

        self.torch = torch
        self.numpy = numpy
        self.import_s = time.perf_counter() - started
        self.threads = thread_count()
        self.sources = source_files()
        self.runs: dict[socket.socket, int] = {}  # client connection -> run PID
        self.accepting = True
        self.stopping = ""  # why the worker stops (a signal's name), once it must
        self.wake = os.pipe()  # a stop signal writes to it, so that select() returns at once
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(socket_path)
        self.listener.listen(64)

    # ---- checks before a fork ------------------------------------------------------------------
    def refusal(self, request: dict) -> str | None:
        """Why this request cannot be served as a new process would run it, or None."""
        argv, cwd = request["argv"], request["cwd"]
        script = Path(os.path.realpath(os.path.join(cwd, argv[0]))) if argv else None
        if script != SCRIPT.resolve():
            return f"the command is not {SCRIPT} (the checkout this worker imported): {argv[:1]}"
        differing = env_differences(self.env, request["env"])
        if differing:
            return f"the environment differs from the worker's in {', '.join(differing[:5])}"
        changed = next((p for p, key in self.sources.items() if self._identity(p) != key), None)
        if changed:
            self.retire(f"{changed} changed since the worker started")
            return f"{changed} changed since the worker started"
        if thread_count() > self.threads or self.torch.cuda.is_initialized():  # BLAS pools may stop at a fork
            self.retire("a thread or CUDA context appeared in the worker")
            return "the worker is no longer in its start-up state"
        return None

    @staticmethod
    def _identity(path: str) -> tuple[int, ...] | None:
        try:
            return file_identity(path)
        except OSError:
            return None

    def retire(self, why: str) -> None:
        """Take no more commands (clients then run train.py themselves); exit once the runs end."""
        if self.accepting:
            print(f"worker {self.pid}: {why}; taking no more commands", flush=True)
            self.accepting = False
            self.listener.close()

    # ---- serving -------------------------------------------------------------------------------------
    def serve(self) -> None:
        """Serve until retired with no run left, or stopped (a signal, or the owner gone)."""
        for sig in STOPS:
            signal.signal(sig, self.on_stop)
        os.set_blocking(self.wake[1], False)
        signal.set_wakeup_fd(self.wake[1])
        while (self.accepting or self.runs) and not self.stopping:
            if os.getppid() != self.owner:
                self.stopping = "the process that started the worker is gone"
                break
            self.reap()
            sockets = ([self.listener] if self.accepting else []) + list(self.runs)
            ready, _, _ = select.select([self.wake[0], *sockets], [], [], POLL_S)
            for sock in ready:
                if sock is self.wake[0]:
                    os.read(self.wake[0], 64)
                elif self.stopping:
                    break
                elif sock is self.listener:
                    self.accept()
                else:
                    self.client_gone(sock)
        if self.stopping:
            self.stop(self.stopping)

    def on_stop(self, signum: int, frame) -> None:
        self.stopping = signal.Signals(signum).name

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(REQUEST_TIMEOUT_S)
        reader = Reader(conn)
        try:
            request = reader.next(max_fds=3)
        except (OSError, ValueError):
            request = None
        fds = reader.fds
        try:
            if request is None or len(fds) != 3:
                return conn.close()
            why = self.refusal(request)
            if why:
                print(f"worker {self.pid}: refused {request['argv'][:1]}: {why}", flush=True)
                try:
                    send(conn, {"refused": why})
                except OSError:
                    pass
                return conn.close()
            weights = weights_to_hold(request["argv"], request["cwd"])
            if weights:
                from backbone.sources import hold_weights

                if hold_weights(weights):
                    print(f"worker {self.pid}: holds {weights}", flush=True)
            pid = self.fork(request, fds, conn)
            conn.settimeout(None)
            self.runs[conn] = pid
            try:
                send(conn, {"started": pid})
            except OSError:  # the client is gone: serve() sees the connection closed and kills the run
                pass
            print(f"worker {self.pid}: run {pid}: {' '.join(request['argv'])}", flush=True)
        finally:
            for fd in fds:
                os.close(fd)

    def fork(self, request: dict, fds: list[int], conn: socket.socket) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
        pid = os.fork()
        if pid == 0:
            try:
                self.become_run(request, fds, conn, blocked)  # never returns
            finally:  # an error before train.py ran (e.g. its folder is gone): never the worker's code
                traceback.print_exc()
                os._exit(1)
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return pid

    def become_run(self, request: dict, fds: list[int], conn: socket.socket, mask) -> None:
        """In the forked child: the client's streams, folder, environment and arguments, fresh
        random generators, the interpreter's signal handlers; then train.py as __main__, ended as the
        interpreter would end it. Never returns."""
        for sig, handler in self.startup_signals.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(-1)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a stop signal sent meanwhile acts now
        die_with(self.pid)
        for fd in self.wake:
            os.close(fd)
        self.listener.close()
        for other in [conn, *self.runs]:
            other.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        fds.clear()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        reopen_stdio()
        random.seed()  # a new interpreter seeds all three from the OS
        self.numpy.random.seed()
        self.torch.seed()
        sys.argv = list(request["argv"])
        sys.path[0] = str(SCRIPT.parent)
        end_process(run_as_main(SCRIPT))

    def reap(self) -> None:
        """Tell each client whose run has ended how it ended (exit code, or minus the signal)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            print(f"worker {self.pid}: run {pid} ended ({code})", flush=True)
            for conn, run in list(self.runs.items()):
                if run == pid:
                    del self.runs[conn]
                    try:
                        send(conn, {"exit": code})
                    except OSError:
                        pass
                    conn.close()

    def client_gone(self, conn: socket.socket) -> None:
        """A client closed its connection (it was killed): its run goes too, as the process would."""
        try:
            data = conn.recv(1)
        except OSError:
            data = b""
        if data:
            return
        pid = self.runs.pop(conn)
        conn.close()
        print(f"worker {self.pid}: the client of run {pid} is gone; killing the run", flush=True)
        signal_tree(pid, signal.SIGKILL)

    def stop(self, why: str) -> None:
        """Stop every run still served (SIGTERM, SIGKILL after RUN_STOP_GRACE_S), and tell their clients."""
        print(f"worker {self.pid}: stopping ({why})", flush=True)
        self.accepting = False
        stop_trees(list(self.runs.values()), RUN_STOP_GRACE_S)
        self.reap()

    def close(self) -> None:
        self.listener.close()
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--socket", required=True)
    p.add_argument("--ready-fd", type=int, help="write 'ready' to this file descriptor once serving")
    args = p.parse_args(argv)
    worker = Worker(args.socket)
    print(f"worker {worker.pid}: ready on {args.socket} (imports {worker.import_s:.1f} s, "
          f"{worker.threads} threads)", flush=True)
    if args.ready_fd is not None:
        os.write(args.ready_fd, b"ready\n")
        os.close(args.ready_fd)
    try:
        worker.serve()  # a forked run never comes back from it: it ends in end_process
    finally:
        if os.getpid() == worker.pid:
            worker.close()


if __name__ == "__main__":
    main()

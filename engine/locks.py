"""OS file locks (flock): one writer per output folder or cache file.

The kernel drops an flock when its process dies, however it dies, so a lock left by a
killed run is free at once; the holder record it leaves behind (PID, host, start time) is
then only reported as stale. A PID file alone could not tell a live holder from a dead one.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a lock."""

    pid: int
    host: str
    started: str

    def describe(self) -> str:
        return f"PID {self.pid} on host {self.host}, started {self.started}"


def _this_holder() -> Holder:
    return Holder(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S %z"))


def _read_holder(fd: int) -> Holder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        data = json.loads(raw.decode())
        return Holder(int(data["pid"]), str(data["host"]), str(data["started"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


class FileLock:
    """An exclusive flock on `path` (created if needed), recording its holder inside."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._fd: int | None = None
        self.stale: Holder | None = None  # the record of a dead holder found on acquiring

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; False (non-blocking) when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self.stale = _read_holder(fd)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(_this_holder().__dict__).encode())
        os.fsync(fd)
        self._fd = fd
        return True

    def holder(self) -> Holder | None:
        """The record of whoever holds the lock now (read without taking it)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return _read_holder(fd)
        finally:
            os.close(fd)

    def held_elsewhere(self) -> bool:
        """Whether another process holds the lock now (probed with a shared lock, released at once,
        so the holder record is left as it is)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops the probe's lock
        return False

    def release(self) -> None:
        """Clear the holder record and unlock. The file stays: deleting it would let a waiter
        lock a file that a third process has already replaced."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


@contextmanager
def locked(path: Path | str) -> Iterator[FileLock]:
    """Block until `path` is locked by this process; release on exit (e.g. around a cache write)."""
    lock = FileLock(path)
    lock.acquire(blocking=True)
    try:
        yield lock
    finally:
        lock.release()

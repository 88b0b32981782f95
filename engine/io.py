"""Atomic file writes: a kill mid-write never leaves a truncated file behind."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Container

from engine.locks import FileLock

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path | str, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)` then rename over `path`, so readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def save_target(name: str) -> str | None:
    """The file an atomic_write temp file (`.<name>.<random>.tmp`) was written for, else None."""
    if not (name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3):
        return None
    return name[1:].rsplit(".", 2)[0]


def is_interrupted_save(name: str) -> bool:
    """Whether a file name is one of atomic_write's temp files."""
    return save_target(name) is not None


def remove_interrupted_saves(folder: Path | str, *, recursive: bool = True, names: Container[str] | None = None,
                             lock_of: Callable[[Path], Path] | None = None) -> list[Path]:
    """Delete the temp files that saves killed mid-write left in `folder` (and below it, if
    `recursive`), only those for the target `names` when given.

    A live save's temp file must never be taken: call it while holding the lock that every
    writer of the folder holds (a run folder's lock), or pass `lock_of(target path)`, the lock
    every writer of that target holds (a cache entry's), which is then tried without waiting:
    a temp file whose writer still holds it is left alone.
    """
    removed = []
    found = Path(folder).rglob(".*.tmp") if recursive else Path(folder).glob(".*.tmp")
    for path in sorted(found):
        target = save_target(path.name)
        if target is None or not path.is_file() or (names is not None and target not in names):
            continue
        lock = FileLock(lock_of(path.with_name(target))) if lock_of else None
        if lock is not None and not lock.acquire(blocking=False):
            continue
        try:
            path.unlink(missing_ok=True)
            removed.append(path)
        finally:
            if lock is not None:
                lock.release()
    return removed


def read_json(path: Path | str, fix: str):
    """json.load with an error that names the file, the line and `fix` (what to do about it)."""
    from engine.errors import DataError, MissingFileError

    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise MissingFileError(f"{path} does not exist. {fix}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not a text (JSON) file ({e.reason} at byte {e.start}). {fix}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}. {fix}") from None

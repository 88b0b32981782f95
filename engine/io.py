"""Atomic file writes: a kill mid-write never leaves a truncated file behind."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

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


def is_interrupted_save(name: str) -> bool:
    """Whether a file name is one of atomic_write's temp files (`.<name>.<random>.tmp`)."""
    return name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3


def remove_interrupted_saves(folder: Path | str) -> list[Path]:
    """Delete the temp files that saves killed mid-write left under `folder` (call it only while
    holding the folder's run lock, so no live save's temp file is taken)."""
    removed = []
    for path in sorted(Path(folder).rglob(".*.tmp")):
        if path.is_file() and is_interrupted_save(path.name):
            path.unlink(missing_ok=True)
            removed.append(path)
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

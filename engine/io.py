"""Atomic file writes: a kill mid-write never leaves a truncated file behind."""
from __future__ import annotations

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

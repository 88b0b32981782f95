"""Where the toolbox keeps what it computes once and reuses across runs (role maps, feature
and fingerprint caches): $PROMPTLAB_CACHE, else $XDG_CACHE_HOME/promptlab, else
~/.cache/promptlab. Never the current directory, so results do not depend on where a run starts."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from engine.io import atomic_write_text
from engine.locks import locked


def user_cache_dir(*parts: str) -> Path:
    base = os.environ.get("PROMPTLAB_CACHE")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
        base = str(Path(xdg).expanduser() / "promptlab")
    return Path(base).expanduser().joinpath(*parts)


def sha256_file(path: Path | str, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def file_digest(path: Path | str) -> str:
    """sha256 of a file, remembered per (absolute path, size, mtime) so that a large weights
    file is hashed once, and again whenever it changes."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    index = user_cache_dir("digests.json")
    try:
        known = json.loads(index.read_text())
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), str):
        return known[key]
    digest = sha256_file(path)
    try:
        with locked(index.with_name("digests.lock")):
            try:
                current = json.loads(index.read_text())
            except (OSError, ValueError):
                current = {}
            current = current if isinstance(current, dict) else {}
            current[key] = digest
            atomic_write_text(index, json.dumps(current, indent=1, sort_keys=True))
    except OSError:
        pass  # an unwritable cache only costs a re-hash next time
    return digest

"""Where the toolbox keeps what it computes once and reuses across runs (role maps, feature
and fingerprint caches): $PROMPTLAB_CACHE, else $XDG_CACHE_HOME/promptlab, else
~/.cache/promptlab. Never the current directory, so results do not depend on where a run starts.

Content digests. A cache entry is bound to the bytes of its inputs (weights files, image lists),
never to their names, sizes or modification times: tools such as `tar -x`, `rsync -a` and
`cp -p` restore mtimes, so a replaced file of the same size looks unchanged to a (path, size,
mtime) key. Hashing the bytes again on every run would cost a full read of large inputs, so a
digest is remembered under everything the file system says of the file: resolved path, size,
mtime, inode and ctime. No tool can set a ctime: any change of content or metadata moves it to
the present. A file changed within `RACY_SECONDS` of being hashed is not remembered (as git
treats "racily clean" files), so a coarse clock cannot make a rewrite look unchanged.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable, Sequence

from engine.io import atomic_write_text, remove_interrupted_saves
from engine.locks import locked

RACY_SECONDS = 2.0  # a file changed this recently is hashed every time, never remembered
INDEX_ENTRIES = 2000  # the digest index keeps this many of its newest entries
_INDEX = "digests.json"


def user_cache_dir(*parts: str) -> Path:
    base = os.environ.get("PROMPTLAB_CACHE")
    if not base:
        xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
        base = str(Path(xdg).expanduser() / "promptlab")
    return Path(base).expanduser().joinpath(*parts)


def sha256_file(path: Path | str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_identity(path: Path | str, st: os.stat_result | None = None) -> tuple[int, ...]:
    """What the file system says of a file: device, inode, size, mtime and ctime (ns). A rewrite in
    place, a replacement or a copy over it changes at least one (no tool can set a ctime back), unless
    it lands within the timestamps' resolution of the last change: see `racy`."""
    st = st or os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def stat_key(path: Path | str, st: os.stat_result | None = None) -> str:
    """The resolved path and the file's identity, as one index key."""
    return "|".join([os.path.realpath(path), *map(str, file_identity(path, st))])


def racy(st: os.stat_result, now: float) -> bool:
    """Whether a file changed so recently that a rewrite now could keep its (coarse) timestamps:
    then what the file system says of it does not identify its content."""
    return now - max(st.st_mtime, st.st_ctime) < RACY_SECONDS


def _index_path() -> Path:
    return user_cache_dir(_INDEX)


def _read_index() -> dict[str, str]:
    try:
        known = json.loads(_index_path().read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _remember(key: str, digest: str) -> None:
    """Add one entry to the digest index (newest last, oldest dropped past INDEX_ENTRIES); an
    unwritable cache only costs a re-hash next time."""
    index = _index_path()
    try:
        with locked(index.with_name("digests.lock")):
            remove_interrupted_saves(index.parent, recursive=False, names=(_INDEX,))
            current = {k: v for k, v in _read_index().items() if k != key and isinstance(v, str)}
            current[key] = digest
            kept = dict(list(current.items())[-INDEX_ENTRIES:])
            atomic_write_text(index, json.dumps(kept, indent=1))
    except OSError:
        pass


def _remembered(key: str, stats: Sequence[os.stat_result], compute: Callable[[], str]) -> str:
    """The digest the index holds under `key`, else `compute()`, remembered unless one of the files
    (`stats`, taken before computing) was racy when it was done."""
    known = _read_index().get(key)
    if isinstance(known, str):
        return known
    digest = compute()
    now = time.time()
    if not any(racy(st, now) for st in stats):
        _remember(key, digest)
    return digest


def file_digest(path: Path | str) -> str:
    """sha256 of a file's bytes, remembered under its `stat_key` (a large weights file is hashed
    once, and again whenever it is replaced, whatever its mtime says)."""
    path = Path(path).resolve()
    st = path.stat()
    return _remembered(f"file:{stat_key(path, st)}", [st], lambda: sha256_file(path))


def files_digest(paths: Sequence[Path | str]) -> str:
    """sha256 over an ordered file list: every path with the sha256 of its bytes, so that a
    changed, replaced, added, removed or reordered file changes it. Remembered under the
    `stat_key`s of the whole list: an unchanged image set costs one stat per file."""
    stats = [os.stat(p) for p in paths]
    key = "files:" + hashlib.sha256("\n".join(stat_key(p, st) for p, st in zip(paths, stats)).encode()).hexdigest()

    def digest() -> str:
        h = hashlib.sha256()
        for path in paths:
            h.update(f"{os.path.realpath(path)}\0{sha256_file(path)}\n".encode())
        return h.hexdigest()

    return _remembered(key, stats, digest)

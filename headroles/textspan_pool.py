"""TextSpan's general text pool: `image_descriptions_general.txt` of TextSpan's reference code
(yossigandelsman/clip_text_span, MIT), 3,498 short image descriptions, one per line, unlabelled
(cluster them with --cluster hdbscan). Not shipped: `tools/download_textspan.py` fetches the
file at a pinned commit into the user cache and checks its SHA-256; `--texts textspan` (and
TRAINER.DEAR.ANALYSIS_TEXTS textspan) then name it.
"""
from __future__ import annotations

from pathlib import Path

from engine.cache import sha256_file, user_cache_dir
from engine.errors import DataError, MissingFileError
from engine.fetch import fetch_verified
from engine.io import atomic_write_bytes

NAME = "textspan"
COMMIT = "49f70f31bb13437a870ff8de340626b225500a22"
FILE = "image_descriptions_general.txt"
URL = f"https://raw.githubusercontent.com/yossigandelsman/clip_text_span/{COMMIT}/text_descriptions/{FILE}"
SHA256 = "39c6bf3e788684d9e0e8afa902c13aae1ee8eafefdbab94ba923fd05b9038630"
LICENSE_URL = f"https://github.com/yossigandelsman/clip_text_span/blob/{COMMIT}/LICENSE"


def default_path() -> Path:
    return user_cache_dir(NAME, FILE)


def download(dest: Path | str | None = None, url: str = URL, timeout: float = 60) -> tuple[Path, str]:
    """Fetch the pool to `dest` (default: the user cache); returns (path, "downloaded" | "present").
    The bytes are checked before anything is written, so a failed or altered download leaves
    no file; an existing file with other content is not replaced."""
    dest = Path(dest) if dest else default_path()
    if dest.is_file():
        if sha256_file(dest) == SHA256:
            return dest, "present"
        raise DataError(f"{dest} exists but is not TextSpan's pool (SHA-256 differs from {SHA256[:12]}); "
                        "move it away, or pass another --out")
    data = fetch_verified(url, SHA256, timeout, "TextSpan's pool", f"Download it by hand to {dest} (SHA-256 {SHA256})")
    atomic_write_bytes(dest, data)
    return dest, "downloaded"


def resolve(spec: str | Path) -> Path:
    """`textspan` -> the downloaded pool (checked); anything else is a path."""
    if str(spec) != NAME:
        return Path(spec)
    path = default_path()
    if not path.is_file():
        raise MissingFileError(f"TextSpan's text pool is not downloaded yet (looked for {path}): run "
                               "`python tools/download_textspan.py`, or pass the file's path")
    if sha256_file(path) != SHA256:
        raise DataError(f"{path} is not TextSpan's pool (SHA-256 differs); delete it and run "
                        "`python tools/download_textspan.py` again")
    return path

"""Files fetched from a URL and pinned by their SHA-256: the bytes are checked before anything is
written, so a failed, truncated or altered download leaves no file behind."""
from __future__ import annotations

import hashlib
import urllib.request

from engine.errors import DataError, MissingFileError


def fetch_verified(url: str, sha256: str, timeout: float = 60, what: str = "the file", fix: str = "") -> bytes:
    """The bytes at `url` (https:// or file://), if their SHA-256 is `sha256`; else an error that
    names the URL, both digests and `fix`."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (OSError, ValueError) as e:
        raise MissingFileError(f"Could not fetch {what} from {url} ({e}). {fix}".rstrip()) from e
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256.lower():
        raise DataError(f"Refused {what} fetched from {url}: its SHA-256 is {digest}, not the pinned {sha256}; "
                        f"nothing was written. {fix}".rstrip())
    return data

"""Role maps shared as files: a lab computes a backbone's map once (tools/head_roles.py, e.g. ViT-B/16
on ImageNet's validation images), publishes the JSON, and every user of those weights reads the same
bytes with

    TRAINER.DEAR.ROLE_MAP https://<host>/<map>.json TRAINER.DEAR.ROLE_MAP_SHA256 <its SHA-256>

A URL (https://, or file:// for a shared folder) is fetched once into the user cache, under its
SHA-256, and checked before it is kept; other bytes are refused. A map records the fingerprint of
the weights it was computed on (`weights`, or its cache key's), and a run on other weights is
refused: its heads' roles are another model's.
"""
from __future__ import annotations

import re
from pathlib import Path

from engine.cache import sha256_file, user_cache_dir
from engine.errors import ConfigError, DataError
from engine.fetch import fetch_verified
from engine.io import atomic_write_bytes, remove_interrupted_saves
from engine.locks import locked

URL_SCHEMES = ("https://", "file://")
SHA256_PATTERN = re.compile(r"[0-9a-f]{64}")


def is_url(spec: str) -> bool:
    return spec.startswith(URL_SCHEMES) or spec.startswith("http://")


def check_pin(spec: str, sha256: str) -> None:
    """A URL needs a pinned SHA-256 (64 hex digits); a pin, where given, must be one."""
    if sha256 and not SHA256_PATTERN.fullmatch(sha256.lower()):
        raise ConfigError(f"TRAINER.DEAR.ROLE_MAP_SHA256 must be 64 hexadecimal digits (sha256sum of the map), got {sha256!r}")
    if not is_url(spec):
        return
    if not spec.startswith(URL_SCHEMES):
        raise ConfigError(f"TRAINER.DEAR.ROLE_MAP {spec}: only https:// and file:// URLs are fetched")
    if not sha256:
        raise ConfigError(f"TRAINER.DEAR.ROLE_MAP {spec} is a URL: pin it with TRAINER.DEAR.ROLE_MAP_SHA256 <its "
                          "SHA-256> (the line tools/head_roles.py prints for a map it wrote), so that every run reads "
                          "the same bytes")


def fetched_path(sha256: str) -> Path:
    return user_cache_dir("role_maps", f"{sha256.lower()}.json")


def fetch_role_map(url: str, sha256: str) -> Path:
    """The map at `url`, from the user cache (fetched into it once); its bytes are the pinned ones."""
    path = fetched_path(sha256)
    if path.is_file() and sha256_file(path) == sha256.lower():
        return path
    fix = ("Check TRAINER.DEAR.ROLE_MAP and TRAINER.DEAR.ROLE_MAP_SHA256 against the line the map's publisher "
           "gave, or use a local file (TRAINER.DEAR.ROLE_MAP roles.json)")
    data = fetch_verified(url, sha256, what="the role map", fix=fix)
    # a write killed midway left a temp file: removed, unless its writer still holds the map's lock
    remove_interrupted_saves(path.parent, recursive=False, lock_of=lambda target: target.with_suffix(".lock"))
    with locked(path.with_suffix(".lock")):
        atomic_write_bytes(path, data)
    print(f"Role map {url}: fetched into {path} (SHA-256 checked)")
    return path


def check_file_pin(path: Path, sha256: str) -> None:
    """A local map given with TRAINER.DEAR.ROLE_MAP_SHA256 must have those bytes."""
    if not sha256:
        return
    digest = sha256_file(path)
    if digest != sha256.lower():
        raise DataError(f"Refused role map {path}: its SHA-256 is {digest}, not the pinned "
                        f"TRAINER.DEAR.ROLE_MAP_SHA256 {sha256}")


def publish_line(path: Path) -> str:
    """The options a user of a published copy of `path` gives."""
    return (f"TRAINER.DEAR.ROLE_MAP https://<where you publish it>/{path.name} "
            f"TRAINER.DEAR.ROLE_MAP_SHA256 {sha256_file(path)}")

"""Role maps computed once and reused across runs.

An analysis is the role map of one backbone on one image list and one text pool under one set
of analysis settings. It is cached in the user cache (engine.cache.user_cache_dir("head_roles")),
never under the current directory, as JSON + heatmap PNG, under a name made from its key:

  backbone name and weights fingerprint (backbone.weights_fingerprint), the exact image list
  (digest of every resolved path with its content: engine.cache.files_digest), the image transform, the text
  pool's SHA-256, every AnalysisSettings field, and its scope: `global` (the backbone's map,
  shared by every run) or `auto` (bound to a run's dataset, seed, shots and class subset).

The JSON holds the full key; a file whose key is not exactly the expected one (stale, damaged,
or copied from another backbone or image set) is never used: it is recomputed and replaced.
Computing happens under a file lock and every file is written atomically, so parallel runs
that need the same analysis compute it once and never see half a file. While it computes, the
image moments are saved beside it (`.moments.pt`, bound to the same key), so an interrupted
analysis resumes where it stopped; the file goes once the map is written.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from backbone import ClipBackbone
from engine.cache import files_digest, sha256_file, user_cache_dir
from engine.checkpoint import DIGEST_SUFFIX
from engine.io import remove_interrupted_saves
from engine.locks import locked
from headroles.analysis import BATCH_SIZE, AnalysisSettings, MomentsFile, run_analysis
from headroles.images import clip_transform
from headroles.pool import read_pool
from headroles.report import save_role_map

# Bump when the analysis code changes what it computes from the same inputs (2: images bound to content).
FORMAT = 2
TRANSFORM = "clip_transform: bicubic resize, centre crop, OpenAI mean/std"
SCOPES = ("global", "auto")
MOMENTS_SUFFIX = ".moments.pt"  # beside the map while the analysis runs


@dataclass(frozen=True)
class AnalysisInput:
    backbone: str  # MODEL.BACKBONE.NAME
    fingerprint: str  # backbone.weights_fingerprint(backbone, pretrained)
    images: tuple[str, ...]
    pool: Path
    settings: AnalysisSettings
    scope: dict  # {"kind": "global"} or {"kind": "auto", "dataset", "seed", "shots", "subsample"}; "seed" for a random init


def cache_key(inp: AnalysisInput) -> dict:
    """Everything the analysis depends on, as plain JSON values."""
    if inp.scope.get("kind") not in SCOPES:
        raise ValueError(f"scope kind must be one of {SCOPES}, got {inp.scope!r}")
    key = {
        "format": FORMAT, "backbone": inp.backbone, "weights": inp.fingerprint,
        "images": {"count": len(inp.images), "sha256": files_digest(inp.images)},
        "transform": TRANSFORM, "text_pool_sha256": sha256_file(inp.pool),
        "settings": asdict(inp.settings), "scope": inp.scope,
    }
    return json.loads(json.dumps(key, sort_keys=True))


def cache_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    backbone = re.sub(r"[^A-Za-z0-9._-]+", "-", key["backbone"])
    return user_cache_dir("head_roles", f"{backbone}__{key['scope']['kind']}__{digest}.json")


def entry_lock(path: Path) -> Path:
    """The lock every writer of an entry's files holds (its map, heatmap, moments and their digest)."""
    name = path.name.removesuffix(DIGEST_SUFFIX).removesuffix(MOMENTS_SUFFIX)
    return path.with_name(name).with_suffix(".lock")


def read_cached(path: Path, key: dict) -> dict | None:
    """The cached payload if `path` holds exactly this analysis (and its heatmap is there), else None."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("cache_key") != key or not path.with_suffix(".png").is_file():
        return None
    return payload


def cached_analysis(clip: ClipBackbone, inp: AnalysisInput, batch_size: int = BATCH_SIZE) -> Path:
    """The cached role map of this analysis, computed first if there is none (or only a stale one)."""
    key = cache_key(inp)
    path = cache_path(key)
    if path.parent.is_dir():
        remove_interrupted_saves(path.parent, recursive=False, lock_of=entry_lock)
    if read_cached(path, key) is not None:
        print(f"Role map ({inp.scope['kind']}): using the cached analysis {path}")
        return path
    with locked(entry_lock(path)):
        if read_cached(path, key) is not None:  # made by another process while we waited
            print(f"Role map ({inp.scope['kind']}): using the analysis another run just made, {path}")
            return path
        if path.exists():
            print(f"Role map ({inp.scope['kind']}): {path} is not this analysis (stale, damaged or from another "
                  "backbone / image set); recomputing it")
        print(f"Role map ({inp.scope['kind']}): computing the head analysis of {inp.backbone} once on "
              f"{len(inp.images)} images (cached at {path})")
        resume = MomentsFile(path.with_suffix(MOMENTS_SUFFIX), json.dumps(key, sort_keys=True))
        payload = run_analysis(clip, list(inp.images), clip_transform(clip.image_size), read_pool(inp.pool),
                               inp.settings, batch_size, resume)
        save_role_map({**payload, "cache_key": key}, path)
        resume.remove()
    return path


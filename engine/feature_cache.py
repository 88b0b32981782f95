"""Evaluation features reused across runs: computed once per key, verified on every load.

A method whose image tower is untouched at evaluation (its image features are the frozen
backbone's) sees the same test features in every seed, method and protocol step on a dataset.
`FeatureCache.load_or_compute` stores them under the user cache folder (engine/cache.py),
named by the SHA-256 of a key that holds everything that changes them; the caller builds the
key (trainers/common.py: backbone weights, the images' content (`engine.cache.files_digest`),
evaluation transform, precision, batch size, device type, torch version). The file repeats the
key and the image list, and both are compared on load, as is the file's recorded digest
(engine/checkpoint.py): any difference recomputes. Writes are atomic and made under a lock, so
parallel runs on one dataset compute the features once; the temp files of writes that a kill
interrupted are removed the next time the cache is used.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

import torch

from engine.cache import user_cache_dir
from engine.checkpoint import load_tensors, save_tensors
from engine.errors import UserError
from engine.io import remove_interrupted_saves
from engine.locks import locked

FORMAT = 2  # 2: images bound to their content, entries verified by their recorded digest


def key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True)


def key_digest(key: dict) -> str:
    return hashlib.sha256(key_text(key).encode()).hexdigest()


class FeatureCache:
    """Feature tensors [N, ...] for an ordered image list, by key."""

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder) if folder is not None else user_cache_dir("image_features")

    def path(self, key: dict) -> Path:
        return self.folder / f"{key_digest(key)}.pt"

    def load(self, key: dict, impaths: Sequence[str]) -> torch.Tensor | None:
        """The stored features if the file holds exactly this key and image list, else None."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            entry = load_tensors(path, "feature cache entry")
        except UserError:  # damaged or unverifiable: recomputed, never trusted
            return None
        if (not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("key") != key_text(key)
                or entry.get("impaths") != list(impaths)):
            return None
        features = entry.get("features")
        if not isinstance(features, torch.Tensor) or features.shape[0] != len(impaths):
            return None
        return features

    def save(self, key: dict, impaths: Sequence[str], features: torch.Tensor) -> Path:
        path = self.path(key)
        save_tensors({"format": FORMAT, "key": key_text(key), "impaths": list(impaths), "features": features.cpu()},
                     path)
        return path

    @staticmethod
    def lock_of(entry: Path) -> Path:
        """The lock every writer of an entry (or of its digest file) holds."""
        return entry.parent / (entry.name.split(".", 1)[0] + ".lock")

    def load_or_compute(self, key: dict, impaths: Sequence[str],
                        compute: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, bool]:
        """(features, whether they came from the cache). An unwritable cache folder only costs
        the reuse: the features are computed and returned all the same."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"Feature cache {self.folder} is not usable ({e}); computing the features")
            return compute(), False
        remove_interrupted_saves(self.folder, recursive=False, lock_of=self.lock_of)
        with locked(self.lock_of(self.path(key))):
            cached = self.load(key, impaths)
            if cached is not None:
                return cached, True
            features = compute()
            try:
                self.save(key, impaths, features)
            except OSError as e:
                print(f"Could not store the features in {self.folder} ({e}); they are recomputed next time")
            return features, False

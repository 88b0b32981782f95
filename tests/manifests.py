"""A whole run manifest (engine/run_identity.py) for tests that write results.json files by hand."""
from __future__ import annotations

from engine.run_identity import config_digest


def whole_manifest(config: dict | None = None, **fields) -> dict:
    config = config if config is not None else {"TEST": {"SPLIT": "test"}}
    manifest = {
        "trainer": "CoOp", "dataset": "DescribableTextures", "seed": 1, "num_shots": 16, "subsample": "all",
        "backbone": "ViT-B/16", "weights": "sha256:" + "0" * 64, "mode": "train", "model": None,
        "config": config, "config_sha256": config_digest(config), "code": "git:test",
    }
    manifest.update(fields)
    return manifest

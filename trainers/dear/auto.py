"""TRAINER.DEAR.ROLE_MAP auto: Concept Entropy on the run's training images, computed once per
(backbone, dataset, analysis settings) and cached as JSON + heatmap under AUTO_DIR."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from backbone import ClipBackbone
from engine.data.base import Datum
from engine.data.transforms import build_test_transform
from headroles.analysis import AnalysisSettings, run_analysis
from headroles.images import evenly
from headroles.pool import DEFAULT_POOL, read_pool
from headroles.report import save_role_map


def auto_settings(cfg, clip: ClipBackbone) -> AnalysisSettings:
    c = cfg.TRAINER.DEAR
    return AnalysisSettings(
        layers=tuple(range(c.J, clip.vision_layers + 1)), attributes=tuple(c.ATTRIBUTES),
        n_texts=c.AUTO_N_TEXTS, thresholds=c.AUTO_THRESHOLDS, weighting=c.AUTO_WEIGHTING,
    )


def auto_path(cfg, settings: AnalysisSettings) -> Path:
    """Cache file named by backbone and dataset, plus a digest of everything the map depends on."""
    key = {
        "settings": asdict(settings), "pretrained": cfg.MODEL.BACKBONE.PRETRAINED,
        "max_images": cfg.TRAINER.DEAR.AUTO_MAX_IMAGES, "input": list(cfg.INPUT.SIZE),
        "pool": hashlib.sha1(DEFAULT_POOL.read_bytes()).hexdigest(),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    backbone = re.sub(r"[^A-Za-z0-9._-]+", "-", cfg.MODEL.BACKBONE.NAME)
    return Path(cfg.TRAINER.DEAR.AUTO_DIR) / f"{backbone}__{cfg.DATASET.NAME}__{digest}.json"


def auto_role_map(cfg, clip: ClipBackbone, train_items: Sequence[Datum]) -> Path:
    settings = auto_settings(cfg, clip)
    path = auto_path(cfg, settings)
    if path.is_file():
        print(f"Role map (auto): using the cached analysis {path}")
        return path
    print(f"Role map (auto): no cached analysis at {path}; running it on the training images once")
    paths = evenly([d.impath for d in train_items], cfg.TRAINER.DEAR.AUTO_MAX_IMAGES)
    payload = run_analysis(clip, paths, build_test_transform(cfg), read_pool(), settings)
    save_role_map(payload, path)
    return path

"""A generated mini dataset in CoOp's Caltech101 layout: split JSON plus tiny images."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["red_thing", "green_thing", "blue_thing", "yellow_thing", "white_thing"]
COLORS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (230, 220, 20), (240, 240, 240)]
COUNTS = {"train": 4, "val": 2, "test": 3}


def make_caltech_like(root: Path, size: int = 32, seed: int = 0) -> Path:
    """DATA/caltech-101/101_ObjectCategories/<class>/*.jpg + split_zhou_Caltech101.json."""
    rng = np.random.default_rng(seed)
    ds = Path(root) / "caltech-101"
    images = ds / "101_ObjectCategories"
    split = {k: [] for k in COUNTS}
    for label, (name, color) in enumerate(zip(CLASSES, COLORS)):
        (images / name).mkdir(parents=True, exist_ok=True)
        i = 0
        for part, n in COUNTS.items():
            for _ in range(n):
                pixels = np.clip(np.array(color) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
                rel = f"{name}/image_{i:04d}.jpg"
                Image.fromarray(pixels).save(images / rel)
                split[part].append([rel, label, name])
                i += 1
    (ds / "split_zhou_Caltech101.json").write_text(json.dumps(split))
    return Path(root)

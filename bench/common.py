"""Helpers shared by the benchmark scripts."""
from __future__ import annotations

import json
import os
import random
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

ATTRIBUTES = ("color", "shape", "texture", "object", "position")
WORDS = ["amber", "crested", "lesser", "spotted", "marsh", "glider", "kettle", "lantern", "thistle",
         "harrier", "copper", "dune", "falcon", "velvet", "moss", "ridge", "plover", "orchid"]


def classnames(n: int, seed: int = 0) -> list[str]:
    """Made-up class names of 1-3 words."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(WORDS, rng.randint(1, 3))) for _ in range(n)]


def median_time(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    """Median wall time of `fn` over `repeats` calls (after one warm-up call)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _write_image(job: tuple[str, int, int, int]) -> None:
    path, label, index, size = job
    rng = np.random.default_rng(label * 100_003 + index)
    base = np.array([(label * 37) % 256, (label * 91) % 256, (label * 53) % 256])
    pixels = np.clip(base + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def make_caltech(root: Path, classes: int, counts: dict[str, int], size: int) -> Path:
    """DATA/caltech-101 with CoOp's split file: `classes` classes of generated JPEGs."""
    folder = root / "caltech-101"
    split_file = folder / "split_zhou_Caltech101.json"
    if split_file.is_file():
        return root
    images = folder / "101_ObjectCategories"
    split, jobs = {k: [] for k in counts}, []
    for label in range(classes):
        name = f"class_{label:03d}"
        (images / name).mkdir(parents=True, exist_ok=True)
        i = 0
        for part, n in counts.items():
            for _ in range(n):
                rel = f"{name}/image_{i:04d}.jpg"
                jobs.append((str(images / rel), label, i, size))
                split[part].append([rel, label, name.replace("_", " ")])
                i += 1
    with ProcessPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        list(pool.map(_write_image, jobs, chunksize=64))
    split_file.write_text(json.dumps(split))
    return root


def write_role_map(path: Path, backbone: str) -> Path:
    """A role map for every vision head of the backbone, with every role present: heads cycle
    through the attributes, Generalization and Mixed."""
    from backbone import load_clip

    clip = load_clip(backbone, pretrained=False)
    first, layers, heads = 1, clip.vision_layers, clip.vision_heads
    cycle = [{"role": "attribute", "attribute": a} for a in ATTRIBUTES] + [{"role": "generalization"},
                                                                          {"role": "mixed"}]
    entries = [{"layer": layer, "head": h, **cycle[(layer + h) % len(cycle)]}
               for layer in range(first, layers + 1) for h in range(heads)]
    path.write_text(json.dumps({"backbone": "device-check", "heads": entries}))
    return path


def save_random_vit_b16(path: Path, fp16_values: bool = False) -> Path:
    """A random ViT-B/16 (seed 0) as an OpenAI-style state dict, written anew every time (a file of
    that name from another run or version is never trusted). `fp16_values`: rounded to fp16, so
    code that loads it into fp16 layers first (the official build_model) gets the same numbers."""
    import torch

    from backbone import load_clip

    torch.manual_seed(0)
    state = load_clip("ViT-B/16", pretrained=False).model.state_dict()
    if fp16_values:
        state = {k: v.half().float() if v.is_floating_point() else v for k, v in state.items() if k != "attn_mask"}
    torch.save(state, path)
    return path

"""DeAR's head analysis (headroles.analysis): time per image and peak memory on a random-init
ViT-B/16, for growing image counts, with the class-token capture it uses against the capture of
every position it used before (the baseline, in the same run).

    python bench/bench_head_analysis.py [--images 64 256] [--batch-size 64] [--backbone ViT-B/16]

Each (capture, image count) runs in its own process, so on a CPU the peak resident memory
(ru_maxrss) is that analysis's alone (the backbone included); the images are random 224 px PNGs.
The figures go to docs/DEAR.md ("The head analysis: time and memory").
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds the packages

import headroles.analysis as analysis  # noqa: E402
from backbone import TowerHooks, load_clip  # noqa: E402
from headroles.analysis import AnalysisSettings, default_layers, peak_memory_gb, run_analysis  # noqa: E402
from headroles.images import clip_transform  # noqa: E402
from headroles.pool import DEFAULT_POOL, read_pool  # noqa: E402


def all_positions(clip, images, layers):
    """The baseline: every position's head outputs captured, the class token's used."""
    zero = [layer - 1 for layer in layers]
    out = clip.forward_image(images.to(clip.device, clip.dtype), TowerHooks(capture_heads=set(zero)))
    parts = torch.stack([out.head_outputs[layer][:, 0] for layer in zero], dim=1)
    return clip.image_head_direct(parts, out.tokens[:, 0]).flatten(1, 2)


def one(args) -> dict:
    torch.manual_seed(0)
    clip = load_clip(args.backbone, pretrained=False, precision="fp32", device=args.device)
    folder = Path(tempfile.mkdtemp(prefix="bench-head-analysis-"))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(args.images):
        path = folder / f"{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    if args.capture == "all":
        analysis.batch_contributions = torch.no_grad()(all_positions)
    settings = AnalysisSettings(layers=default_layers(clip.vision_layers), attributes=("color", "shape"), n_texts=20)
    start = time.perf_counter()
    run_analysis(clip, paths, clip_transform(clip.image_size), read_pool(DEFAULT_POOL), settings, args.batch_size)
    return {"seconds": time.perf_counter() - start, "peak_gb": peak_memory_gb(clip.device)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="ViT-B/16")
    p.add_argument("--images", type=int, nargs="+", default=[64, 256])
    p.add_argument("--batch-size", type=int, default=analysis.BATCH_SIZE)
    p.add_argument("--device", default="cpu")
    p.add_argument("--capture", choices=("cls", "all"), help=argparse.SUPPRESS)  # one measurement (child process)
    args = p.parse_args()
    if args.capture:
        (args.images,) = args.images
        print(json.dumps(one(args)))
        return
    print(f"{args.backbone} (random init), batch {args.batch_size}, {torch.get_num_threads()} threads, {args.device}")
    print(f"{'capture':<26}{'images':>8}{'s/image':>10}{'peak GB':>10}")
    for capture, label in (("all", "every position (before)"), ("cls", "class token (now)")):
        for n in args.images:
            cmd = [sys.executable, __file__, "--backbone", args.backbone, "--images", str(n), "--batch-size",
                   str(args.batch_size), "--device", args.device, "--capture", capture]
            result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            print(f"{label:<26}{n:>8}{result['seconds'] / n:>10.3f}{result['peak_gb']:>10.2f}")


if __name__ == "__main__":
    main()

"""What binding the feature cache to image content costs, on a Caltech101-sized test set.

    python bench/bench_content_digest.py [--images 2465] [--kb 14] [--repeats 5]

Caltech101's test split (CoOp's split_zhou_Caltech101.json) has 2,465 images; its JPEGs average
about 14 KB (131 MB for 9,144 images). This writes that many JPEGs of about that size to a
temporary folder and times, in one run, each over the whole list:
  - "stat key": the former feature-cache key (path, size, mtime of every file), the floor;
  - "content, first time": engine.cache.files_digest with an empty digest index (every byte read
    and hashed; the files are in the page cache, as right after a copy);
  - "content, remembered": files_digest once the list's digest is in the index (one stat per
    file and an index read), the cost of every later evaluation of an unchanged set.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine.cache as cache  # noqa: E402


def write_images(folder: Path, n: int, kb: float) -> list[str]:
    """JPEGs of about `kb` KB: smooth colour fields with noise, 300x200 like Caltech101's."""
    rng = np.random.default_rng(0)
    paths = []
    noise = max(1.0, kb * 1.25)
    for i in range(n):
        base = rng.integers(0, 255, (1, 1, 3))
        pixels = np.clip(base + rng.normal(0, noise, (200, 300, 3)), 0, 255).astype(np.uint8)
        path = folder / f"image_{i:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=75)
        paths.append(str(path))
    return paths


def stat_key_signature(paths: list[str]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{os.path.abspath(p)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def timed(fn, repeats: int, before=None) -> list[float]:
    out = []
    for _ in range(repeats):
        if before:
            before()
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2465)
    p.add_argument("--kb", type=float, default=14.0, help="target mean JPEG size")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ["PROMPTLAB_CACHE"] = str(folder / "cache")
        paths = write_images(folder, args.images, args.kb)
        total_mb = sum(os.path.getsize(q) for q in paths) / 1e6
        cache.RACY_SECONDS = 0.0  # the files were written just now; remember their digests all the same
        index = folder / "cache" / "digests.json"
        rows = [
            ("stat key (path, size, mtime)", timed(lambda: stat_key_signature(paths), args.repeats)),
            ("content, first time (hash every byte)",
             timed(lambda: cache.files_digest(paths), args.repeats, before=lambda: index.unlink(missing_ok=True))),
        ]
        cache.files_digest(paths)
        rows.append(("content, remembered (stat + index)", timed(lambda: cache.files_digest(paths), args.repeats)))
    print(f"{args.images} JPEGs, {total_mb:.1f} MB ({total_mb * 1e3 / args.images:.1f} KB each), "
          f"{args.repeats} repeats, median (min-max) in ms")
    for name, times in rows:
        ms = [t * 1e3 for t in times]
        print(f"  {name:40s} {statistics.median(ms):8.1f} ({min(ms):.1f}-{max(ms):.1f})")


if __name__ == "__main__":
    main()

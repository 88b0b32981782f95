"""What `python train.py` imports before it does anything: `python -X importtime train.py --help`, this
checkout against another revision (exported with `git archive`), alternating, and where the time goes.

    python bench/bench_imports.py [--before e974aff] [--rounds 6]

Prints each tree's total import time (the sum of the top-level imports' cumulative times; min and
median over the rounds) and, for this checkout, the share of torch, open_clip and what open_clip
pulls in (torchvision, of it torch._dynamo; transformers; timm), and of our own modules.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( +)(\S+)")
OURS = ("engine", "backbone", "trainers", "datasets", "attrworld", "headroles", "external", "train")
PARTS = ("torch", "open_clip", "torchvision", "torch._dynamo", "transformers", "timm")


def importtime(tree: Path) -> dict[str, float]:
    err = subprocess.run([sys.executable, "-X", "importtime", "train.py", "--help"], cwd=tree, capture_output=True,
                         text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}).stderr
    rows = [(int(m[1]), int(m[2]), len(m[3]) - 1, m[4]) for m in map(LINE.match, err.splitlines()) if m]
    first: dict[str, int] = {}
    for _, cumulative, _, name in rows:
        first.setdefault(name, cumulative)  # the first import pays; later ones find it in sys.modules
    out = {name: first.get(name, 0) / 1e6 for name in PARTS}
    out["total"] = sum(c for _, c, depth, _ in rows if depth == 0) / 1e6
    out["our modules"] = sum(s for s, _, _, name in rows if name.split(".")[0] in OURS) / 1e6
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", default="e974aff", help="the revision to compare with (default: before issue 23)")
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args(argv)
    archive = subprocess.run(["git", "archive", args.before], cwd=REPO, capture_output=True, check=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        trees = {f"before ({args.before})": Path(tmp), "after (this checkout)": REPO}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for r in range(args.rounds):
            for name, tree in (list(trees.items()) if r % 2 == 0 else list(trees.items())[::-1]):
                runs[name].append(importtime(tree))
    for name, found in runs.items():
        totals = [f["total"] for f in found]
        print(f"{name:24} total {min(totals):.2f} s min, {statistics.median(totals):.2f} s median")
    found = runs["after (this checkout)"]
    total = statistics.median(f["total"] for f in found)
    print("this checkout, share of the median total:")
    for part in (*PARTS, "our modules"):
        print(f"  {part:14} {statistics.median(f[part] for f in found):5.2f} s  "
              f"{100 * statistics.median(f[part] for f in found) / total:3.0f}%")


if __name__ == "__main__":
    main()

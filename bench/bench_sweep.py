"""The tiny-attr base-to-new sweep of bench/bench_feature_cache.py (ZeroshotCLIP, CoOp, CLIP-Adapter,
CoCoOp; 3 seeds; 24 runs), every run its own `python train.py` process (before: --no-warm) against
runs from a warm worker (after: engine/warm), the feature cache on in both, in one script run.

    python bench/bench_sweep.py [--methods ZeroshotCLIP CoOp CLIPAdapter CoCoOp] [--seeds 1 2 3]
                                [--dataset attr_hue_shift] [--jobs 1] [--out DIR]

Both are the real command (tools/sweep.py --config-set tiny), into fresh output trees with their
own empty feature caches. To keep a shared machine's load from favouring either, they alternate
seed by seed, in the order ABBAAB...: each seed is one `tools/sweep.py --seeds S` invocation per
variant, into that variant's tree (so each variant pays the sweep's own start-up, and the warm one
its worker's, once per seed: more often than one sweep of all seeds would). The dataset is
generated before the clocks start. Prints each variant's wall time, its runs' training and
evaluation time (results.json), and after / before.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"before (own processes)": ["--no-warm"], "after (warm workers)": []}


def sweep(out: Path, methods: list[str], dataset: str, seed: str, jobs: int, data: Path, flags: list[str]) -> float:
    env = {**os.environ, "PROMPTLAB_CACHE": str(out / "cache"), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "tools/sweep.py", "--protocol", "base2new", "--config-set", "tiny",
               "--methods", *methods, "--datasets", dataset, "--seeds", seed, "--jobs", str(jobs),
               "--root", str(data), "--output", str(out / "output"), *flags]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def run_times(out: Path) -> dict[str, float]:
    """Training and evaluation seconds of every run (results.json), and the run count."""
    train = evaluate = 0.0
    runs = 0
    for path in (out / "output").rglob("results.json"):
        runs += 1
        for e in json.loads(path.read_text())["evaluations"].values():
            evaluate += e.get("eval_time_s", 0.0)
            train += e.get("wall_time_s", 0.0) - e.get("eval_time_s", 0.0)
    return {"runs": runs, "train_s": train, "eval_s": evaluate}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=["ZeroshotCLIP", "CoOp", "CLIPAdapter", "CoCoOp"])
    p.add_argument("--seeds", nargs="+", default=["1", "2", "3"])
    p.add_argument("--dataset", default="attr_hue_shift")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "output" / "bench_sweep")
    args = p.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    data = args.out / "data"
    sys.path.insert(0, str(REPO))
    from attrworld import derived

    spec = next(s for s in derived.DATASETS.values() if s.dataset_dir == args.dataset)
    derived.generate(spec, data)  # before the clocks start: both variants read the same images
    names = list(VARIANTS)
    wall = {name: 0.0 for name in names}
    for i, seed in enumerate(args.seeds):
        for name in (names if i % 2 == 0 else names[::-1]):
            seconds = sweep(args.out / name.split()[0], args.methods, args.dataset, seed, args.jobs, data,
                            VARIANTS[name])
            wall[name] += seconds
            print(f"seed {seed}  {name:24} {seconds:7.1f} s", flush=True)
    rows = {name: {"wall_s": wall[name], **run_times(args.out / name.split()[0])} for name in names}
    for name, r in rows.items():
        print(f"{name:24} wall {r['wall_s']:7.1f} s   {r['runs']} runs: training {r['train_s']:6.1f} s, "
              f"evaluating {r['eval_s']:6.1f} s, the rest (starting and ending runs, the sweep itself) "
              f"{r['wall_s'] - r['train_s'] - r['eval_s']:6.1f} s")
    before, after = (rows[n] for n in names)
    print(f"after / before: wall {after['wall_s'] / before['wall_s']:.2f}x")


if __name__ == "__main__":
    main()

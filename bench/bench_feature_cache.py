"""A tiny-attr base-to-new sweep with and without the frozen-feature cache, in one run.

    python bench/bench_feature_cache.py [--methods ZeroshotCLIP CoOp CLIPAdapter CoCoOp] [--seeds 1 2 3]
                                        [--dataset attr_hue_shift] [--out DIR]

Both sweeps are the real command (tools/sweep.py --config-set tiny), one chain at a time, into
fresh output trees: "before" with TEST.FEATURE_CACHE False, "after" with it on and an empty cache
(so the first evaluation of each class split computes and stores the features, every later one
reuses them). The dataset is generated before either sweep starts. Prints each sweep's wall time, the time its runs spent evaluating (results.json's
eval_time_s), and the ratio after/before.
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


def sweep(out: Path, methods: list[str], dataset: str, seeds: list[str], cache: bool, data: Path) -> dict:
    env = {**os.environ, "PROMPTLAB_CACHE": str(out / "cache"), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "tools/sweep.py", "--protocol", "base2new", "--config-set", "tiny",
               "--methods", *methods, "--datasets", dataset, "--seeds", *seeds, "--jobs", "1",
               "--root", str(data), "--output", str(out / "output"), "--opts", "TEST.FEATURE_CACHE", str(cache)]
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    evals = [e.get("eval_time_s", 0.0) for path in (out / "output").rglob("results.json")
             for e in json.loads(path.read_text())["evaluations"].values()]
    return {"wall_s": wall, "eval_s": sum(evals), "evaluations": len(evals)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=["ZeroshotCLIP", "CoOp", "CLIPAdapter", "CoCoOp"])
    p.add_argument("--seeds", nargs="+", default=["1", "2", "3"])
    p.add_argument("--dataset", default="attr_hue_shift")
    p.add_argument("--out", type=Path, default=REPO / "output" / "bench_feature_cache")
    args = p.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    data = args.out / "data"
    sys.path.insert(0, str(REPO))
    from attrworld import derived

    spec = next(s for s in derived.DATASETS.values() if s.dataset_dir == args.dataset)
    derived.generate(spec, data)  # before the clocks start: both sweeps read the same images
    rows = {}
    for name, cache in (("before (no cache)", False), ("after (cache)", True)):
        rows[name] = sweep(args.out / name.split()[0], args.methods, args.dataset, args.seeds, cache, data)
        r = rows[name]
        print(f"{name:18} wall {r['wall_s']:7.1f} s   evaluating {r['eval_s']:6.1f} s "
              f"({100 * r['eval_s'] / r['wall_s']:.0f}% of it, {r['evaluations']} evaluations)", flush=True)
    before, after = rows["before (no cache)"], rows["after (cache)"]
    print(f"after / before: wall {after['wall_s'] / before['wall_s']:.2f}x, "
          f"evaluation {after['eval_s'] / before['eval_s']:.2f}x")


if __name__ == "__main__":
    main()

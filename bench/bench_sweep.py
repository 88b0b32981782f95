"""The tiny-attr base-to-new sweep of bench/bench_feature_cache.py (ZeroshotCLIP, CoOp, CLIP-Adapter,
CoCoOp; 3 seeds; 24 runs), every run its own `python train.py` process (before: --no-warm) against
runs from a warm worker (after: engine/warm), the feature cache on in both, in one script run.

    python bench/bench_sweep.py [--methods ZeroshotCLIP CoOp CLIPAdapter CoCoOp] [--seeds 1 2 3]
                                [--dataset attr_hue_shift] [--out DIR]

Both variants are the sweep's own launcher (sweeps/local.py's Runner: the chains tools/sweep.py
plans, each step `bash scripts/run.sh ...`, one slot), each into a fresh output tree with its own
empty feature cache. To keep a shared machine's load from favouring either, they alternate chain by
chain (A B, then B A, ...), in one process: the sweep's own start-up (imports, planning) is the same
for both and is left out; the warm worker's start-up is counted, once, in the first chain that
needs it, as in a real sweep. The dataset is generated before the clocks start. Prints each
variant's wall time, its runs' training and evaluation time (results.json), the rest (starting and
ending runs), the time per method, and after / before.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {"before (own processes)": False, "after (warm workers)": True}


def run_times(output: Path) -> dict[str, float]:
    """Training and evaluation seconds of every run (results.json), and the run count."""
    train = evaluate = 0.0
    runs = 0
    for path in output.rglob("results.json"):
        runs += 1
        for e in json.loads(path.read_text())["evaluations"].values():
            evaluate += e.get("eval_time_s", 0.0)
            train += e.get("wall_time_s", 0.0) - e.get("eval_time_s", 0.0)
    return {"runs": runs, "train_s": train, "eval_s": evaluate}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=["ZeroshotCLIP", "CoOp", "CLIPAdapter", "CoCoOp"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--dataset", default="attr_hue_shift")
    p.add_argument("--out", type=Path, default=REPO / "output" / "bench_sweep")
    args = p.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(REPO))
    import trainers  # noqa: F401  (registers the trainers)
    from attrworld import derived
    from engine.registry import TRAINER_REGISTRY
    from sweeps.local import Runner, slot_envs
    from sweeps.plan import Planner

    spec = next(s for s in derived.DATASETS.values() if s.dataset_dir == args.dataset)
    data = args.out / "data"
    derived.generate(spec, data)  # before the clocks start: both variants read the same images
    methods = [TRAINER_REGISTRY.get(m) for m in args.methods]
    runners, chains, outputs = {}, {}, {}
    for name, warm in VARIANTS.items():
        root = args.out / name.split()[0]
        outputs[name] = root / "output"
        env = {"DATA": str(data), "OUTPUT": str(outputs[name]), "PROMPTLAB_CACHE": str(root / "cache")}
        chains[name] = Planner("base2new", methods, "tiny", {}, [], str(outputs[name])).chains(
            [args.dataset], args.seeds, [int(os.environ.get("SHOTS", 16))])
        (root / "logs").mkdir(parents=True)
        runners[name] = Runner(env, root / "logs", slot_envs(1, []), warm=warm)
    names = list(VARIANTS)
    wall = {name: 0.0 for name in names}
    per_method: dict[tuple[str, str], float] = {}
    try:
        for i, pair in enumerate(zip(*(chains[n] for n in names))):
            order = list(zip(names, pair)) if i % 2 == 0 else list(zip(names, pair))[::-1]
            for name, chain in order:
                start = time.perf_counter()
                outcome = runners[name].run_chain(chain)
                seconds = time.perf_counter() - start
                if outcome.failed:
                    raise RuntimeError(f"{chain.name} failed ({outcome.reason}); logs in {args.out / name.split()[0]}")
                wall[name] += seconds
                method = chain.name.split("-")[0]
                per_method[(name, method)] = per_method.get((name, method), 0.0) + seconds
                print(f"{chain.name:48} {name:24} {seconds:7.1f} s", flush=True)
    finally:
        for runner in runners.values():
            runner.close()
    rows = {name: {"wall_s": wall[name], **run_times(outputs[name])} for name in names}
    print()
    for name, r in rows.items():
        print(f"{name:24} wall {r['wall_s']:7.1f} s   {r['runs']} runs: training {r['train_s']:6.1f} s, "
              f"evaluating {r['eval_s']:6.1f} s, the rest (starting and ending runs, the scripts) "
              f"{r['wall_s'] - r['train_s'] - r['eval_s']:6.1f} s")
    for method in args.methods:
        before, after = (per_method[(n, method)] for n in names)
        print(f"  {method:14} {before:7.1f} s -> {after:7.1f} s  ({after / before:.2f}x)")
    before, after = (rows[n] for n in names)
    print(f"after / before: wall {after['wall_s'] / before['wall_s']:.2f}x")


if __name__ == "__main__":
    main()

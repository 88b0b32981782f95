"""Where one run's time goes, and what a warm worker (engine/warm) saves of it, in one script run.

    python bench/bench_fixed_cost.py [--rounds 3] [--backbones tiny-attr ViT-B/16] [--out DIR]

Part 1, one run as its own `python train.py` process, split into: interpreter start, imports,
config and manifest (the weights fingerprint, the output folder's lock), dataset index and
few-shot split (and the data loaders), weights load (the backbone built and its weights read),
the rest of the model build, the first training step (the data loader's first batch included),
the rest of training, evaluation, writing results and checkpoints, and the interpreter's exit.
Timers wrap the engine's own functions in that process; the command is the sweep's.
Part 2, process start to the first training step (the fixed cost), `python train.py` against the
same command through a warm worker that has already imported and read the weights (started once
before the rounds, as a sweep's slot worker is), alternating in every round; plus what a fork of
the worker costs alone (the floor of any design that starts runs from a warm process).

tiny-attr: CoOp's sweep config (tiny_ep10) on the attribute world's AttrHueShift, base classes,
16 shots (the runs of bench/bench_feature_cache.py). ViT-B/16: CoOp's vit_b16_ep50 with random
weights saved to a file (so they are read as OpenAI's would be), on a generated 10-class
Caltech101 (224 px), 1 shot, 1 epoch, 20 test images. Prints min and median over the rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHASES = ("interpreter start", "imports", "config + manifest", "dataset index + split", "weights load",
          "model build", "first step", "training", "evaluation", "writing results", "exit")
DETAILS = {"weights load": "  of which the file read"}  # what a warm worker's held weights save
FIRST_STEP = re.compile(r"^epoch \[1/\d+\] batch \[1/\d+\] time ([\d.]+) ")


# ---- the timed child (part 1) ------------------------------------------------------------------------
def timed_child(argv: list[str], out: Path) -> None:
    """One run in this process with timers on the engine's functions; phases to `out` (JSON)."""
    marks = {"interpreter start": time.time() - float(os.environ["BENCH_T0"])}
    clock = time.perf_counter
    start = clock()
    sys.path.insert(0, str(REPO))
    import train  # noqa: F401

    marks["imports"] = clock() - start
    import backbone.loader
    import trainers.common
    from engine import launch, logging, trainer

    spent: dict[str, float] = {}
    first_step: dict[str, float] = {}

    def timed(owner, name: str, key: str) -> None:
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            began = clock()
            try:
                return original(*args, **kwargs)
            finally:
                spent[key] = spent.get(key, 0.0) + clock() - began
        setattr(owner, name, wrapper)

    timed(trainers.common, "load_clip", "weights")
    timed(backbone.loader, "read_state_dict", "read")
    timed(trainer.TrainerX, "build_data_loader", "data")
    timed(trainer.TrainerX, "__init__", "init")
    timed(trainer.TrainerX, "train", "train")
    timed(trainer.TrainerX, "test", "test")
    timed(trainer.TrainerX, "save_model", "save")
    timed(logging.ResultsWriter, "write", "results")
    before_train = trainer.TrainerX.before_train

    def mark_first_step(self):
        before_train(self)
        step = self.forward_backward
        began = clock()

        def first(batch):
            result = step(batch)
            first_step.setdefault("s", clock() - began)
            return result
        self.forward_backward = first
    trainer.TrainerX.before_train = mark_first_step
    init = trainer.TrainerX.__init__

    def mark_init(self, cfg):
        spent.setdefault("before init", clock() - main_start)
        init(self, cfg)
    trainer.TrainerX.__init__ = mark_init

    main_start = clock()
    launch.main(argv[1:])
    total = clock() - main_start
    marks["config + manifest"] = spent["before init"]
    marks["dataset index + split"] = spent["data"]
    marks["weights load"] = spent["weights"]
    marks[DETAILS["weights load"]] = spent.get("read", 0.0)
    marks["model build"] = spent["init"] - spent["data"] - spent["weights"]
    marks["first step"] = first_step["s"]
    marks["evaluation"] = spent["test"] - spent["results"]
    marks["writing results"] = spent.get("save", 0.0) + spent["results"]
    marks["training"] = spent["train"] - marks["first step"] - spent["test"] - spent.get("save", 0.0)
    marks["unaccounted (main)"] = total - spent["before init"] - spent["init"] - spent["train"]
    marks["end"] = time.time() - float(os.environ["BENCH_T0"])
    out.write_text(json.dumps(marks))


# ---- the parent ---------------------------------------------------------------------------------------
def prepare(out: Path, backbones: list[str]) -> dict[str, list[str]]:
    """Data, weights and each backbone's train.py command (without --output-dir)."""
    sys.path.insert(0, str(REPO))
    commands = {}
    if "tiny-attr" in backbones:
        from attrworld import derived

        spec = next(s for s in derived.DATASETS.values() if s.dataset_dir == "attr_hue_shift")
        derived.generate(spec, out / "data")
        commands["tiny-attr"] = [
            "train.py", "--root", str(out / "data"), "--skip-finished", "--seed", "1", "--trainer", "CoOp",
            "--dataset-config-file", "configs/datasets/attr_hue_shift.yaml",
            "--config-file", "configs/trainers/CoOp/tiny_ep10.yaml", "DATASET.NUM_SHOTS", "16",
            "DATASET.SUBSAMPLE_CLASSES", "base"]
    if "ViT-B/16" in backbones:
        from bench.common import make_caltech, save_random_vit_b16

        make_caltech(out / "data", 10, {"train": 2, "val": 1, "test": 2}, 224)
        weights = save_random_vit_b16(out / "vit_b16_random.pt")
        commands["ViT-B/16"] = [
            "train.py", "--root", str(out / "data"), "--skip-finished", "--seed", "1", "--trainer", "CoOp",
            "--dataset-config-file", "configs/datasets/caltech101.yaml",
            "--config-file", "configs/trainers/CoOp/vit_b16_ep50.yaml", "DATASET.NUM_SHOTS", "1",
            "OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "2", "MODEL.BACKBONE.NAME", str(weights)]
    return commands


def phases(command: list[str], out: Path, env: dict[str, str]) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    record = out.with_suffix(".json")
    argv = [command[0], "--output-dir", str(out), *command[1:]]
    t0 = time.time()
    subprocess.run([sys.executable, __file__, "--child", json.dumps(argv), str(record)], cwd=REPO,
                   env={**env, "BENCH_T0": repr(t0)}, check=True, stdout=subprocess.DEVNULL)
    wall = time.time() - t0
    marks = json.loads(record.read_text())
    marks["exit"] = wall - marks.pop("end")
    marks["total"] = wall
    return marks


def fixed_cost(command: list[str], out: Path, env: dict[str, str], worker=None) -> float:
    """Seconds from starting the command to the start of its first training step (the step's own
    time, printed on its line, taken off); the run is stopped there."""
    shutil.rmtree(out, ignore_errors=True)
    argv = [command[0], "--output-dir", str(out), *command[1:], "TRAIN.PRINT_FREQ", "1"]
    prefix = [sys.executable] if worker is None else [sys.executable, "-m", "engine.warm.client"]
    env = {**env, **(worker.env_for_commands() if worker is not None else {})}
    t0 = time.perf_counter()
    proc = subprocess.Popen([*prefix, *argv], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        found = FIRST_STEP.match(line)
        if found:
            seconds = time.perf_counter() - t0 - float(found.group(1))
            break
    else:
        raise RuntimeError(f"no training step in the output of {' '.join(argv)}")
    proc.terminate()
    proc.wait()
    return seconds


def fork_cost(rounds: int) -> float:
    """A fork of a process that has imported the toolbox, and the child's exit (the floor)."""
    code = ("import os, sys, time; sys.path.insert(0, '.'); import train\n"
            "best = 1e9\n"
            f"for _ in range({rounds * 5}):\n"
            "    t = time.perf_counter(); pid = os.fork()\n"
            "    if pid == 0: os._exit(0)\n"
            "    os.waitpid(pid, 0); best = min(best, time.perf_counter() - t)\n"
            "print(best)")
    return float(subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                                check=True).stdout.split()[-1])


def summary(values: list[float]) -> str:
    return f"{min(values):7.2f} {statistics.median(values):7.2f}"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--backbones", nargs="+", default=["tiny-attr", "ViT-B/16"], choices=["tiny-attr", "ViT-B/16"])
    p.add_argument("--out", type=Path, default=REPO / "output" / "bench_fixed_cost")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return timed_child(json.loads(args.child[0]), Path(args.child[1]))
    args.out.mkdir(parents=True, exist_ok=True)
    commands = prepare(args.out, args.backbones)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "PROMPTLAB_CACHE": str(args.out / "cache")}
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, OMP_NUM_THREADS={env.get('OMP_NUM_THREADS', 'unset')}, "
          f"{args.rounds} rounds (min and median, seconds)", flush=True)

    runs = {b: [] for b in commands}
    for r in range(args.rounds):
        for backbone, command in commands.items():
            runs[backbone].append(phases(command, args.out / "runs" / f"phases-{r}", env))
    print("\nPart 1: one run as its own process (python train.py)")
    print(f"{'phase':24}" + "".join(f" {b:>15}" for b in commands))
    for phase in (*PHASES, "total"):
        print(f"{phase:24}" + "".join(f" {summary([m[phase] for m in runs[b]]):>15}" for b in commands))
        if phase in DETAILS:
            print(f"{DETAILS[phase]:24}" + "".join(f" {summary([m[DETAILS[phase]] for m in runs[b]]):>15}"
                                                 for b in commands))
    for backbone in commands:
        fixed = [sum(m[p] for p in PHASES[:PHASES.index("first step")]) for m in runs[backbone]]
        print(f"fixed cost (start to first step), {backbone}: {summary(fixed)}")

    from engine.warm.owner import WarmWorker

    worker = WarmWorker(env, args.out / "warm-worker.log").start()
    started = time.perf_counter()
    assert worker.wait_ready(), (args.out / "warm-worker.log").read_text()
    worker_start = time.perf_counter() - started
    costs = {(b, how): [] for b in commands for how in ("fresh", "warm")}
    try:
        for r in range(args.rounds + 1):  # round 0 lets the worker read each backbone's weights once
            for backbone, command in commands.items():
                order = ("fresh", "warm") if r % 2 else ("warm", "fresh")
                for how in order:
                    seconds = fixed_cost(command, args.out / "runs" / f"fixed-{how}", env,
                                         worker if how == "warm" else None)
                    if r:
                        costs[(backbone, how)].append(seconds)
    finally:
        worker.stop()
    print(f"\nPart 2: process start to the first training step, alternating (worker start-up, paid once "
          f"per slot: {worker_start:.1f} s; a fork of a warm process alone: {1000 * fork_cost(args.rounds):.0f} ms)")
    print(f"{'backbone':10} {'python train.py':>16} {'warm worker':>16} {'warm / own (median)':>20}")
    for backbone in commands:
        fresh, warm = costs[(backbone, "fresh")], costs[(backbone, "warm")]
        print(f"{backbone:10} {summary(fresh):>16} {summary(warm):>16} "
              f"{statistics.median(warm) / statistics.median(fresh):>19.2f}x")


if __name__ == "__main__":
    main()

"""PREC amp against fp32 on this CPU, every method, in one run: what TRAINER.CPU_AMP auto should pick.

    python bench/bench_precision.py [--methods CoOp DeAR MMRL ...] [--repeats 3]

Each method's training step (bench/bench_methods.py's, random-init ViT-B/16, batch 4, 100 classes)
runs in fp32 and in amp with bf16 autocast forced (TRAINER.CPU_AMP bf16), the two alternating in
one process so machine load hits both alike; the fastest step of each is kept. The last column is
what `amp` does by default here (backbone.precision.cpu_amp_dtype: bf16 only with AMX units).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds the packages

from backbone import load_clip  # noqa: E402
from backbone.precision import cpu_amp_dtype, cpu_has_fast_bf16  # noqa: E402
from bench.bench_methods import METHODS, training_step  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    short = {name.split()[0]: name for name in METHODS}
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", choices=list(short), default=list(short))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    from tabulate import tabulate

    torch.manual_seed(0)
    clip = load_clip("ViT-B/16", pretrained=False, precision="fp32", device="cpu")
    auto = "bf16 autocast" if cpu_amp_dtype("auto") is not None else "fp32"
    print(f"CPU with AMX bf16 units: {cpu_has_fast_bf16()}; PREC amp (TRAINER.CPU_AMP auto) runs {auto}", flush=True)
    rows = []
    for name in args.methods:
        method = short[name]
        steps = {"fp32": training_step(method, clip, "cpu", "fp32")[0],
                 "bf16": training_step(method, clip, "cpu", "amp", cpu_amp="bf16")[0]}
        times = {k: [] for k in steps}
        for r in range(args.repeats + 1):
            for kind, step in steps.items():
                start = time.perf_counter()
                step()
                if r:
                    times[kind].append(time.perf_counter() - start)
        fp32, bf16 = min(times["fp32"]), min(times["bf16"])
        rows.append([method, f"{fp32:.2f}", f"{bf16:.2f}", f"{bf16 / fp32:.2f}x", auto])
        print(f"{method:34} fp32 {fp32:.2f} s  amp (bf16) {bf16:.2f} s  ({bf16 / fp32:.2f}x)", flush=True)
    print(tabulate(rows, headers=["method", "fp32 step (s)", "amp bf16 step (s)", "bf16 / fp32", "amp auto runs"]))


if __name__ == "__main__":
    main()

"""Training step of DeAR, MMRL and MMRL++ with the frozen image prefix computed once per step
(the default) against two full passes (the prompted one and frozen CLIP's), in one run.

    python bench/bench_prefix.py [--backbones ViT-B/16 tiny-attr] [--methods DeAR MMRL MMRLpp]
                                 [--rounds 5] [--batch 4] [--classes 100]

A step is the trainer's own: `training_losses(images, labels, share_prefix)`, backward and the
optimiser update, fp32, on a random-init ViT-B/16 (224 px) and on tiny-attr (64 px). The two
variants alternate within each round, so machine load hits both alike; the table gives each one's
median step and the ratio shared / two-pass (the target on ViT-B/16: at most 0.8). The numbers
are the same either way (tests/test_prefix_sharing.py).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds the packages

import datasets  # noqa: E402,F401  (registers the datasets)
import trainers  # noqa: E402,F401  (registers the trainers)
from bench.common import make_caltech, write_role_map  # noqa: E402
from engine.launch import parse_args, setup_cfg  # noqa: E402
from engine.registry import TRAINER_REGISTRY  # noqa: E402
from engine.utils import set_random_seed  # noqa: E402

CONFIGS = {("DeAR", "ViT-B/16"): "vit_b16", ("MMRL", "ViT-B/16"): "vit_b16", ("MMRLpp", "ViT-B/16"): "vit_b16",
           ("DeAR", "tiny-attr"): "tiny_ep10_batch4", ("MMRL", "tiny-attr"): "tiny_ep10_batch4",
           ("MMRLpp", "tiny-attr"): "tiny_ep10_batch4"}


def build(method: str, backbone: str, data: Path, role_map: Path, out: Path):
    cls = TRAINER_REGISTRY.get(method)
    argv = ["--root", str(data), "--seed", "1", "--trainer", method,
            "--dataset-config-file", "configs/datasets/caltech101.yaml",
            "--config-file", f"configs/trainers/{method}/{CONFIGS[(method, backbone)]}.yaml", "--output-dir", str(out),
            "DATALOADER.NUM_WORKERS", "0", "MODEL.BACKBONE.NAME", backbone,
            "MODEL.BACKBONE.PRETRAINED", str(backbone == "tiny-attr"), f"TRAINER.{cls.CONFIG_NODE}.PREC", "fp32"]
    if method == "DeAR":
        argv += ["TRAINER.DEAR.ROLE_MAP", str(role_map)]
    set_random_seed(1)
    with contextlib.redirect_stdout(io.StringIO()):
        return cls(setup_cfg(parse_args(argv)))


def step_time(trainer, images: torch.Tensor, labels: torch.Tensor, share: bool) -> float:
    start = time.perf_counter()
    losses = trainer.training_losses(images, labels, share_prefix=share)[1]
    trainer.model_backward_and_update(losses["loss"])
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", nargs="+", default=["ViT-B/16", "tiny-attr"])
    p.add_argument("--methods", nargs="+", default=["DeAR", "MMRL", "MMRLpp"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--classes", type=int, default=100)
    args = p.parse_args(argv)
    from tabulate import tabulate

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_caltech(tmp / "data", args.classes, {"train": 1, "val": 1, "test": 1}, 16)
        for backbone in args.backbones:
            role_map = write_role_map(tmp / f"roles-{backbone.replace('/', '')}.json", backbone)
            size = 224 if backbone != "tiny-attr" else 64
            for method in args.methods:
                trainer = build(method, backbone, data, role_map, tmp / f"out-{method}-{backbone.replace('/', '')}")
                trainer.set_model_mode("train")
                images = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
                labels = torch.arange(args.batch) % trainer.num_classes
                step_time(trainer, images, labels, True)  # warm-up
                times = {True: [], False: []}
                for _ in range(args.rounds):
                    for share in (False, True):
                        times[share].append(step_time(trainer, images, labels, share))
                two, one = statistics.median(times[False]), statistics.median(times[True])
                rows.append([backbone, method, f"{two:.3f}", f"{one:.3f}", f"{one / two:.2f}x"])
                print(f"{backbone:9} {method:7} two passes {two:.3f} s, shared prefix {one:.3f} s ({one / two:.2f}x)",
                      flush=True)
    print(tabulate(rows, headers=["backbone", "method", "two passes (s)", "shared prefix (s)", "ratio"]))


if __name__ == "__main__":
    main()

"""CoOp on a random-init ViT-B/16 (CPU): evaluation with class prompts encoded once vs
once per batch (CoOp's code), and the training step time for 10 and 100 classes.

    python bench/bench_coop.py [--batches 5] [--eval-batch 32]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds the packages

from backbone import load_clip  # noqa: E402
from bench.common import classnames, median_time  # noqa: E402
from trainers.coop import CoOpCLIP, PromptLearner  # noqa: E402


def make_model(clip, n_classes: int) -> CoOpCLIP:
    return CoOpCLIP(clip, PromptLearner(clip, classnames(n_classes), 16, "", False, "end"))


def bench_eval(clip, n_batches: int, batch: int) -> None:
    model = make_model(clip, 100)
    images = [torch.randn(batch, 3, 224, 224) for _ in range(n_batches)]

    def per_batch():
        with torch.no_grad():
            for x in images:
                model(x)

    def cached():
        with torch.no_grad(), model.cached_text_features():
            for x in images:
                model(x)

    t_per_batch, t_cached = median_time(per_batch, 1, warmup=False), median_time(cached, 1, warmup=False)
    print(f"eval, 100 classes, {n_batches} batches of {batch}: per-batch text encoding {t_per_batch:.2f} s, "
          f"encoded once {t_cached:.2f} s, speed-up {t_per_batch / t_cached:.2f}x")


def bench_step(clip, n_classes: int, batch: int = 4, repeats: int = 3) -> None:
    model = make_model(clip, n_classes)
    opt = torch.optim.SGD(model.prompt_learner.parameters(), lr=0.002, momentum=0.9)
    x, y = torch.randn(batch, 3, 224, 224), torch.randint(0, n_classes, (batch,))

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    print(f"CoOp train step, batch {batch}, {n_classes} classes: {median_time(step, repeats):.2f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("--eval-batch", type=int, default=32)
    args = p.parse_args()
    torch.manual_seed(0)
    clip = load_clip("ViT-B/16", pretrained=False, precision="fp32")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, random-init ViT-B/16, fp32, CPU")
    bench_eval(clip, args.batches, args.eval_batch)
    for n in (10, 100):
        bench_step(clip, n)


if __name__ == "__main__":
    main()

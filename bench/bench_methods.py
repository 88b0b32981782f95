"""Train-step time and peak memory of every prompt learner on a random-init ViT-B/16
(batch 4, 100 classes, the official configs' prompt sizes), in one table.

    python bench/bench_methods.py [--repeats 2] [--device cpu] [--prec fp32]

Each method runs in its own process, so peak memory is per method: on CUDA the allocator's
peak; on CPU the growth of the process's peak RSS during the steps (activations, gradients,
optimizer state) and the whole process's peak (frozen CLIP included). PromptSRC's text
teacher is built from one template here: it is computed once at build time and does not
change the step.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds the packages

from backbone import autocast, grad_scaler, load_clip  # noqa: E402
from bench.common import classnames, median_time  # noqa: E402
from trainers.cocoop import CoCoOpCLIP, CoCoOpPrompts  # noqa: E402
from trainers.coop import CoOpCLIP, PromptLearner  # noqa: E402
from trainers.deep_prompts import DeepPromptCLIP, IndependentPrompts, count_learnable  # noqa: E402
from trainers.maple import MultiModalPrompts  # noqa: E402
from trainers.promptsrc import PromptSRCCLIP, promptsrc_losses  # noqa: E402

METHODS = {
    "CoOp (16 ctx)": lambda clip, names: CoOpCLIP(clip, PromptLearner(clip, names, 16, "", False, "end")),
    "CoCoOp (4 ctx)": lambda clip, names: CoCoOpCLIP(clip, CoCoOpPrompts(clip, names, 4, "a photo of a")),
    "IVLP (2+2, depth 12)": lambda clip, names: DeepPromptCLIP(
        clip, IndependentPrompts(clip, names, 2, 2, 12, 12, "a photo of a")),
    "MaPLe (2, depth 9)": lambda clip, names: DeepPromptCLIP(clip, MultiModalPrompts(clip, names, 2, "a photo of a", 9)),
    "PromptSRC (4+4, depth 9)": lambda clip, names: PromptSRCCLIP(
        clip, IndependentPrompts(clip, names, 4, 4, 9, 9, "a photo of a"), names, ("a photo of a {}.",)),
}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_one(method: str, repeats: int, device: str, prec: str, n_classes: int = 100, batch: int = 4) -> dict:
    torch.manual_seed(0)
    clip = load_clip("ViT-B/16", pretrained=False, precision=prec, device=device)
    model = METHODS[method](clip, classnames(n_classes))
    learner = model.prompt_learner
    opt = torch.optim.SGD(learner.parameters(), lr=0.002, momentum=0.9)
    scaler = grad_scaler(prec, device)
    x = torch.randn(batch, 3, clip.image_size, clip.image_size, device=device)
    y = torch.randint(0, n_classes, (batch,), device=device)

    def step():
        with autocast(prec, device):
            if isinstance(model, PromptSRCCLIP):
                loss = promptsrc_losses(model.train_outputs(x), y, 25, 10)["total"]
            else:
                loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device == "cuda":
            torch.cuda.synchronize()

    before = peak_rss_mib()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = median_time(step, repeats)
    row = {"method": method, "learnable": count_learnable(learner), "step_s": round(seconds, 3)}
    if device == "cuda":
        row["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    else:
        row["step_peak_mib"] = round(peak_rss_mib() - before)
        row["process_peak_mib"] = round(peak_rss_mib())
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--prec", default="fp32", choices=("fp16", "fp32", "amp"))
    p.add_argument("--method", choices=list(METHODS), help=argparse.SUPPRESS)  # child process
    args = p.parse_args()
    if args.method:
        print(json.dumps(run_one(args.method, args.repeats, args.device, args.prec)))
        return
    rows = []
    for method in METHODS:
        out = subprocess.run(
            [sys.executable, __file__, "--method", method, "--repeats", str(args.repeats),
             "--device", args.device, "--prec", args.prec],
            check=True, capture_output=True, text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], file=sys.stderr)
    from tabulate import tabulate

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, random-init ViT-B/16, {args.prec}, "
          f"{args.device}, batch 4, 100 classes, median of {args.repeats} steps after one warm-up")
    print(tabulate(rows, headers="keys", tablefmt="github"))


if __name__ == "__main__":
    main()

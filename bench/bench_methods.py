"""Train-step time and peak memory of every prompt learner on a random-init ViT-B/16
(batch 4, 100 classes, the official configs' prompt sizes), in one table.

    python bench/bench_methods.py [--repeats 2] [--device cpu] [--prec fp32] [--methods MMRL MMRL++ DeAR ...]
    python bench/bench_methods.py --interleaved --methods MMRL MMRL++ DeAR --repeats 4

Each method runs in its own process, so peak memory is per method: on CUDA the allocator's
peak; on CPU the growth of the process's peak RSS during the steps (activations, gradients,
optimizer state) and the whole process's peak (frozen CLIP included). PromptSRC's text
teacher is built from one template here: it is computed once at build time and does not
change the step. MMRL, MMRL++ and DeAR take their full training loss, frozen-CLIP targets
included (the frozen image layers above the token layer run once more without gradients, as in
their trainers, which share the layers below it: bench/bench_prefix.py); DeAR runs its role
masks (every role present, bench_dear.mixed_role_map) in layers 9-12. `gflop` is one step's
matmul work (forward + backward, FlopCounterMode), which no other load on the machine changes;
`--interleaved` times the methods in one process, alternating their steps (fairer on a shared CPU), and
adds `cpu_s`, the step's CPU time (all threads): the least load-sensitive figure on a shared machine
(with OMP_NUM_THREADS=1 it is the step's work alone, no thread waiting).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds the packages

from backbone import autocast, grad_scaler, load_clip  # noqa: E402
from bench.bench_dear import ATTRIBUTES, mixed_role_map  # noqa: E402
from bench.common import classnames, median_time  # noqa: E402
from trainers.cocoop import CoCoOpCLIP, CoCoOpPrompts  # noqa: E402
from trainers.coop import CoOpCLIP, PromptLearner  # noqa: E402
from trainers.dear.masks import role_masks  # noqa: E402
from trainers.dear.model import DeARCLIP, DeARSettings  # noqa: E402
from trainers.dear.trainer import dear_loss  # noqa: E402
from trainers.deep_prompts import DeepPromptCLIP, IndependentPrompts  # noqa: E402
from trainers.maple import MultiModalPrompts  # noqa: E402
from trainers.mmrl import MMRLCLIP, MMRLSettings, mmrl_loss  # noqa: E402
from trainers.promptsrc import PromptSRCCLIP, promptsrc_losses  # noqa: E402

REP_LAYERS = tuple(range(5, 12))  # MMRL's official REP_LAYERS 6-12, 0-based


def prompted(model):
    """(model, loss) for a classifier trained by cross-entropy on its logits."""
    return model, lambda x, y: F.cross_entropy(model(x), y)


def promptsrc(clip, names):
    model = PromptSRCCLIP(clip, IndependentPrompts(clip, names, 4, 4, 9, 9, "a photo of a"), names, ("a photo of a {}.",))
    return model, lambda x, y: promptsrc_losses(model.train_outputs(x), y, 25, 10)["total"]


def mmrl(settings):
    def build(clip, names):
        model = MMRLCLIP(clip, [f"a photo of a {n}." for n in names], settings)

        def loss(x, y):  # as the trainer's step: the frozen prefix below layer 6 computed once
            prefix = model.image_prefix(x)
            frozen_image, frozen_text = model.frozen_features(x, prefix)
            return mmrl_loss(model.forward_train(x, prefix), y, frozen_image, frozen_text, 0.7, 1.0)["loss"]
        return model, loss
    return build


def dear(clip, names):
    first = 9
    masks = role_masks(mixed_role_map(first, clip.vision_layers, clip.vision_heads), list(range(first, 13)),
                       clip.vision_heads, ATTRIBUTES, 1 + clip.num_patches, "role", clip.dtype).to(clip.device)
    s = DeARSettings(attributes=ATTRIBUTES, first_layer=first - 1, text_first_layer=first - 1, rep_dim=clip.embed_dim)
    model = DeARCLIP(clip, [f"a photo of a {n}." for n in names], s, masks)

    def loss(x, y):  # as the trainer's step: the frozen prefix below layer 9 computed once
        prefix = model.image_prefix(x)
        out = model.forward_train(x, prefix)
        frozen_image = model.frozen_image_features(x, prefix)
        return dear_loss(out, y, frozen_image, model.frozen_text, model.fusion_alpha()[0], 1.0, 0.1)["loss"]
    return model, loss


METHODS = {
    "CoOp (16 ctx)": lambda clip, names: prompted(CoOpCLIP(clip, PromptLearner(clip, names, 16, "", False, "end"))),
    "CoCoOp (4 ctx)": lambda clip, names: prompted(CoCoOpCLIP(clip, CoCoOpPrompts(clip, names, 4, "a photo of a"))),
    "IVLP (2+2, depth 12)": lambda clip, names: prompted(DeepPromptCLIP(
        clip, IndependentPrompts(clip, names, 2, 2, 12, 12, "a photo of a"))),
    "MaPLe (2, depth 9)": lambda clip, names: prompted(
        DeepPromptCLIP(clip, MultiModalPrompts(clip, names, 2, "a photo of a", 9))),
    "PromptSRC (4+4, depth 9)": promptsrc,
    "MMRL (5 tokens, layers 6-12)": mmrl(MMRLSettings(5, REP_LAYERS, 512, 0.7)),
    "MMRL++ (5 tokens, layers 6-12)": mmrl(MMRLSettings(5, REP_LAYERS, 512, 0.7, 0.9, True, 4, 64)),
    "DeAR (5 attributes, layers 9-12)": dear,
}


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def training_step(method: str, clip, device: str, prec: str, n_classes: int = 100, batch: int = 4,
                  cpu_amp: str = "auto"):
    """(one SGD step of `method` on fixed random data, its learnable parameter count); `cpu_amp` is
    TRAINER.CPU_AMP for PREC amp on a CPU."""
    model, loss_of = METHODS[method](clip, classnames(n_classes))
    learnable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(learnable, lr=0.002, momentum=0.9)
    scaler = grad_scaler(prec, device)
    x = torch.randn(batch, 3, clip.image_size, clip.image_size, device=device)
    y = torch.randint(0, n_classes, (batch,), device=device)

    def step():
        with autocast(prec, device, cpu_amp):
            loss = loss_of(x, y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device == "cuda":
            torch.cuda.synchronize()

    return step, sum(p.numel() for p in learnable)


def step_gflop(step) -> float:
    """Matmul/convolution GFLOP of one step, forward and backward (torch's FlopCounterMode):
    a figure no other load on the machine changes."""
    with FlopCounterMode(display=False) as counter:
        step()
    return round(counter.get_total_flops() / 1e9, 1)


def run_one(method: str, repeats: int, device: str, prec: str) -> dict:
    torch.manual_seed(0)
    clip = load_clip("ViT-B/16", pretrained=False, precision=prec, device=device)
    step, learnable = training_step(method, clip, device, prec)
    before = peak_rss_mib()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = median_time(step, repeats)
    row = {"method": method, "learnable": learnable, "gflop": step_gflop(step), "step_s": round(seconds, 3)}
    if device == "cuda":
        row["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    else:
        row["step_peak_mib"] = round(peak_rss_mib() - before)
        row["process_peak_mib"] = round(peak_rss_mib())
    return row


def run_interleaved(methods: list[str], repeats: int, device: str, prec: str) -> list[dict]:
    """All methods on one backbone in one process, their steps alternating (the order reversed every
    round), `repeats` rounds after a warm-up round; the fastest step of each, in wall and CPU time. On a shared CPU, a busy spell then slows every
    method alike, which separate processes (one after the other) do not ensure. No memory figures."""
    torch.manual_seed(0)
    clip = load_clip("ViT-B/16", pretrained=False, precision=prec, device=device)
    steps = {m: training_step(m, clip, device, prec) for m in methods}
    times: dict[str, list[float]] = {m: [] for m in methods}
    cpu: dict[str, list[float]] = {m: [] for m in methods}
    for r in range(repeats + 1):
        for method, (step, _) in (steps.items() if r % 2 else list(steps.items())[::-1]):
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            if r:
                times[method].append(time.perf_counter() - start)
                cpu[method].append(time.process_time() - start_cpu)
    return [{"method": m, "learnable": steps[m][1], "gflop": step_gflop(steps[m][0]), "step_s": round(min(times[m]), 3),
             "cpu_s": round(min(cpu[m]), 3)} for m in methods]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--prec", default="fp32", choices=("fp16", "fp32", "amp"))
    short = {name.split()[0]: name for name in METHODS}
    p.add_argument("--methods", nargs="+", choices=list(short), default=list(short), help="default: all")
    p.add_argument("--interleaved", action="store_true",
                   help="one process, steps alternating between the methods, fastest step (a fairer time on a "
                        "shared CPU; no memory figures)")
    p.add_argument("--method", choices=list(METHODS), help=argparse.SUPPRESS)  # child process
    args = p.parse_args()
    if args.method:
        print(json.dumps(run_one(args.method, args.repeats, args.device, args.prec)))
        return
    methods = [short[m] for m in args.methods]
    if args.interleaved:
        rows = run_interleaved(methods, args.repeats, args.device, args.prec)
        how = f"steps interleaved in one process, fastest of {args.repeats} rounds after a warm-up round"
    else:
        rows = []
        for method in methods:
            out = subprocess.run(
                [sys.executable, __file__, "--method", method, "--repeats", str(args.repeats),
                 "--device", args.device, "--prec", args.prec],
                check=True, capture_output=True, text=True,
            ).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(rows[-1], file=sys.stderr)
        how = f"one process per method, median of {args.repeats} steps after one warm-up"
    dear = next((r for r in rows if r["method"].startswith("DeAR")), None)
    if dear:  # the MMRL/MMRL++ target: within 1.2x of DeAR's step
        for r in rows:
            r["x DeAR (time)"] = round(r["step_s"] / dear["step_s"], 2)
            r["x DeAR (GFLOP)"] = round(r["gflop"] / dear["gflop"], 2)
    from tabulate import tabulate

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, random-init ViT-B/16, {args.prec}, "
          f"{args.device}, batch 4, 100 classes, {how}")
    print(tabulate(rows, headers="keys", tablefmt="github"))


if __name__ == "__main__":
    main()

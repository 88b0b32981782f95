"""DeAR against CoOp: training-step time and peak memory (batch 4, 100 classes by default), on
a random-init ViT-B/16 and on the attribute world's tiny-attr CLIP. DeAR's step is the trainer's
(DeAR.training_losses: the frozen layers below J computed once for both image passes).

    python bench/bench_dear.py [--backbones ViT-B/16 tiny-attr] [--repeats 3] [--device cpu|cuda]

Each (backbone, method) runs in its own process, so on CPU the peak resident memory (ru_maxrss)
is that method's alone; "step +MB" is the peak minus the memory held before the first step
(model, data). On CUDA the figures are torch's allocator peaks. DeAR's masks are [H, L, L]
per layer, broadcast over the batch: no (batch*heads, L, L) tensor is built.
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
from headroles.rolemap import parse_role_map  # noqa: E402
from trainers.coop import CoOpCLIP, PromptLearner  # noqa: E402
from trainers.dear.masks import role_masks  # noqa: E402
from trainers.dear.model import DeARCLIP, DeARSettings  # noqa: E402
from trainers.dear.trainer import dear_loss, learnable_counts  # noqa: E402

ATTRIBUTES = ("color", "shape", "texture", "object", "position")
METHODS = ("CoOp", "DeAR", "DeAR-nomask")


def mixed_role_map(first: int, layers: int, heads: int):
    """Every role present: heads cycle through the attributes, Generalization and Mixed."""
    cycle = [{"role": "attribute", "attribute": a} for a in ATTRIBUTES] + [{"role": "generalization"}, {"role": "mixed"}]
    entries = [{"layer": layer, "head": h, **cycle[(layer + h) % len(cycle)]}
               for layer in range(first, layers + 1) for h in range(heads)]
    return parse_role_map({"heads": entries}, "bench")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def build(method: str, clip, n_classes: int):
    names = classnames(n_classes)
    if method == "CoOp":
        model = CoOpCLIP(clip, PromptLearner(clip, names, 16, "", False, "end"))
        return model, torch.optim.SGD(model.prompt_learner.parameters(), lr=0.002, momentum=0.9)
    first = clip.vision_layers - clip.vision_layers // 3 + 1  # ViT-B/16: 9
    masks = None
    if method == "DeAR":
        rm = mixed_role_map(first, clip.vision_layers, clip.vision_heads)
        layers = list(range(first, clip.vision_layers + 1))
        masks = role_masks(rm, layers, clip.vision_heads, ATTRIBUTES, 1 + clip.num_patches, "role", clip.dtype).to(clip.device)
    s = DeARSettings(attributes=ATTRIBUTES, first_layer=first - 1,
                     text_first_layer=clip.text_layers - (clip.vision_layers - first) - 1, rep_dim=clip.embed_dim)
    model = DeARCLIP(clip, [f"a photo of a {n}." for n in names], s, masks).to(clip.device)
    return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)


def worker(method: str, backbone: str, n_classes: int, batch: int, repeats: int, device: str, prec: str) -> dict:
    torch.manual_seed(0)
    pretrained = backbone != "ViT-B/16" and (Path("backbone/weights") / f"{backbone}.pt").is_file()
    clip = load_clip(backbone, pretrained=pretrained, precision=prec, device=device)
    model, optim = build(method, clip, n_classes)
    scaler = grad_scaler(prec, device)
    x = torch.randn(batch, 3, clip.image_size, clip.image_size, device=device)
    y = torch.randint(0, n_classes, (batch,), device=device)

    def step():
        with autocast(prec, device):
            if method == "CoOp":
                loss = F.cross_entropy(model(x), y)
            else:
                prefix = model.image_prefix(x)  # as DeAR.training_losses: the frozen layers below J once
                out = model.forward_train(x, prefix)
                frozen = model.frozen_image_features(x, prefix)
                loss = dear_loss(out, y, frozen, model.frozen_text, model.fusion_alpha()[0], 1.0, 0.1)["loss"]
        optim.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optim)
        scaler.update()
        if device == "cuda":
            torch.cuda.synchronize()

    before = torch.cuda.memory_allocated() / 2**20 if device == "cuda" else rss_mb()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = median_time(step, repeats)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    learnable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    parts = learnable_counts(model) if method != "CoOp" else {"ctx": learnable}
    return {"method": method, "backbone": backbone + ("" if pretrained else " (random init)"), "step_s": seconds,
            "peak_mb": peak, "step_mb": peak - before, "learnable": learnable, "parts": parts}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbones", nargs="+", default=["ViT-B/16", "tiny-attr"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--prec", default="", help="PREC for both methods (default: amp on CUDA, fp32 on CPU)")
    p.add_argument("--worker", nargs=2, metavar=("METHOD", "BACKBONE"), help=argparse.SUPPRESS)
    args = p.parse_args()
    prec = args.prec or ("amp" if args.device == "cuda" else "fp32")
    if args.worker:
        print(json.dumps(worker(*args.worker, args.classes, args.batch, args.repeats, args.device, prec)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, PREC {prec}, "
          f"batch {args.batch}, {args.classes} classes, median of {args.repeats} steps")
    rows = []
    for backbone in args.backbones:
        for method in args.methods:
            cmd = [sys.executable, __file__, "--worker", method, backbone, "--classes", str(args.classes),
                   "--batch", str(args.batch), "--repeats", str(args.repeats), "--device", args.device, "--prec", prec]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            rows.append(r)
            print(f"{r['backbone']:>26} {r['method']:>12}: step {r['step_s']:.3f} s, peak {r['peak_mb']:.0f} MB "
                  f"(step +{r['step_mb']:.0f} MB), learnable {r['learnable']:,}", flush=True)


if __name__ == "__main__":
    main()

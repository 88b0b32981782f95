"""Contrastive pretraining of the tiny-attr CLIP on attribute-world images made on the fly.

Resumable: every --ckpt-minutes the full state goes atomically to <workdir>/last.pt and
`--resume` continues from it; batches are a pure function of (seed, step), so a resumed
run sees the same data as an uninterrupted one. Every --eval-every steps a linear probe
and zero-shot check of shape/colour/texture is logged, so a tower that ignores shape shows
early. At the end the stem's BatchNorm is recalibrated and the fp16 state dict is written
to --out. The record of the committed run is docs/TINY_CLIP.md.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from open_clip.loss import ClipLoss
from open_clip.model import CLIP
from torch import nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attrworld.probe import attribute_report, render_pool  # noqa: E402
from attrworld.sampling import training_batch  # noqa: E402
from attrworld.zeroshot import MODEL_NAME, to_input  # noqa: E402
from backbone.model_configs import WEIGHTS_DIR, build_model, build_tokenizer, read_config  # noqa: E402
from engine.checkpoint import load_tensors, save_tensors  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from engine.io import atomic_write_text  # noqa: E402

EVAL_SEED, EVAL_POOL, EVAL_TRAIN = 1_000_003, 1024, 768
CALIB_SEED, CALIB_POOL = 2_000_003, 2048


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, required=True, help="checkpoints, metrics and summary (outside the repo)")
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR / f"{MODEL_NAME}.pt", help="fp16 state dict written at the end")
    p.add_argument("--steps", type=int, default=700)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--clip-grad", type=float, default=1.0, help="max gradient norm (8e-4 unclipped collapsed)")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--ckpt-minutes", type=float, default=4.0)
    p.add_argument("--max-minutes", type=float, default=60.0, help="stop early (and still write weights) past this")
    p.add_argument("--resume", action="store_true")
    return p.parse_args(argv)


def stem_norms(model: CLIP) -> list[nn.BatchNorm2d]:
    return [m for m in model.visual.conv1.modules() if isinstance(m, nn.BatchNorm2d)]


def train_mode(model: CLIP) -> None:
    """Train mode with the stem's BatchNorm frozen: batches hold only 2-3 colours, so batch
    statistics would differ from any population statistics used at test time."""
    model.train()
    for bn in stem_norms(model):
        bn.eval()


@torch.no_grad()
def recalibrate_stem_norms(model: CLIP, images) -> None:
    """Give each stem BatchNorm population statistics without changing the function.

    Running stats become the mean/var of the layer's input on diverse images, and the affine
    parameters are refolded so eval outputs are unchanged; a frozen-CLIP user that leaves the
    model in train mode then sees batch statistics close to the running ones.
    """
    model.eval()
    norms, inputs = stem_norms(model), {}
    hooks = [bn.register_forward_pre_hook(lambda m, a: inputs.__setitem__(m, a[0])) for bn in norms]
    model.encode_image(to_input(images))
    for h in hooks:
        h.remove()
    for bn in norms:
        x = inputs[bn].double()
        mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
        old_scale = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
        bn.bias.copy_(bn.bias.double() + (mean - bn.running_mean.double()) * old_scale)
        bn.weight.copy_(old_scale * (var + bn.eps).sqrt())
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)


def make_optimizer(model: CLIP, args) -> torch.optim.AdamW:
    """open_clip's recipe: no decay on gains, biases, norms and the logit scale. Fused, and
    zero_grad(set_to_none=False) below, avoid re-allocating the 25 MB token-embedding grad."""
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "ln" in n or "bias" in n or "logit_scale" in n]
    ids = {id(p) for p in no_decay}
    decay = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98), eps=1e-6, fused=True)


def lr_at(step: int, args) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return 0.5 * args.lr * (1 + math.cos(math.pi * progress))


def save_state(path: Path, state: dict) -> None:
    save_tensors(state, path)


def log(msg: str) -> None:
    tqdm.write(f"[{time.strftime('%H:%M:%S')}] {msg}")
    sys.stdout.flush()


def evaluate(model: CLIP, pool, step: int, metrics_path: Path) -> dict:
    model.eval()
    report = {"step": step, **attribute_report(model, *pool, n_train=EVAL_TRAIN)}
    with open(metrics_path, "a") as f:
        f.write(json.dumps(report) + "\n")
    log("eval " + " ".join(f"{k}={v}" for k, v in report.items()))
    return report


def main(argv=None) -> None:
    args = parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    config = read_config(MODEL_NAME)
    model, tokenizer = build_model(config), build_tokenizer(config)
    optimizer = make_optimizer(model, args)
    ckpt_path = args.workdir / "last.pt"
    step, elapsed, losses = 0, 0.0, []
    if args.resume and ckpt_path.is_file():
        state = load_tensors(ckpt_path, "pretraining checkpoint")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed, losses = state["step"], state["elapsed"], state["losses"]
        log(f"resumed from {ckpt_path} at step {step} ({elapsed / 60:.1f} min already spent)")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"tiny-attr: {n_params / 1e6:.2f}M parameters; {vars(args)}")
    pool = render_pool(EVAL_SEED, EVAL_POOL)
    loss_fn = ClipLoss()

    def checkpoint() -> None:
        save_state(ckpt_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                               "elapsed": elapsed, "losses": losses,
                               "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}})

    start, last_ckpt = time.time() - elapsed, time.time()
    bar = tqdm(total=args.steps, initial=step, desc="pretrain", mininterval=20, file=sys.stdout)
    while step < args.steps and elapsed < args.max_minutes * 60:
        if step % args.eval_every == 0:
            evaluate(model, pool, step, args.workdir / "metrics.jsonl")
        train_mode(model)
        images, captions, _ = training_batch(args.seed, step, args.batch_size)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args)
        image_feats = model.encode_image(to_input(images), normalize=True)
        text_feats = model.encode_text(tokenizer(captions), normalize=True)
        loss = loss_fn(image_feats, text_feats, model.logit_scale.exp())
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad).item()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        losses.append(round(loss.item(), 4))
        elapsed = time.time() - start
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}", refresh=False)
        if step % 10 == 0:
            log(f"step {step} loss {losses[-1]:.4f} avg20 {sum(losses[-20:]) / len(losses[-20:]):.4f} "
                f"lr {lr_at(step - 1, args):.2e} grad {grad_norm:.2f} scale {model.logit_scale.exp().item():.1f} "
                f"{elapsed / 60:.1f} min")
        if time.time() - last_ckpt > args.ckpt_minutes * 60:
            checkpoint()
            last_ckpt = time.time()
    bar.close()
    checkpoint()
    recalibrate_stem_norms(model, render_pool(CALIB_SEED, CALIB_POOL)[0])
    final = evaluate(model, pool, step, args.workdir / "metrics.jsonl")
    half = {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    save_tensors(half, args.out)
    summary = {"steps": step, "planned_steps": args.steps, "samples": step * args.batch_size,
               "wall_minutes": round(elapsed / 60, 1), "final_loss_mean_last_50": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4),
               "parameters": n_params, "args": {k: str(v) for k, v in vars(args).items()}, "final_eval": final}
    atomic_write_text(args.workdir / "summary.json", json.dumps(summary, indent=2))
    log(f"wrote {args.out}; summary: {json.dumps(summary)}")


if __name__ == "__main__":
    run_cli(main)

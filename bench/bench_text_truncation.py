"""Text tower time with and without truncation after the last end-of-text token:
random-init ViT-B/16 text tower, 100 "a photo of a {class}." prompts, fp32, CPU.

    python bench/bench_text_truncation.py [--repeats 3] [--classes 100]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds the packages

from backbone import load_clip  # noqa: E402
from bench.common import classnames, median_time  # noqa: E402

def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--classes", type=int, default=100)
    args = p.parse_args()

    torch.manual_seed(0)
    clip = load_clip("ViT-B/16", pretrained=False, precision="fp32", device="cpu")
    ids = clip.tokenize([f"a photo of a {name}." for name in classnames(args.classes)])
    emb, eot = clip.embed_tokens(ids), clip.eot_index(ids)
    with torch.no_grad():
        short = median_time(lambda: clip.forward_text(emb, eot), args.repeats)
        full = median_time(lambda: clip.forward_text(emb, eot, truncate=False), args.repeats)
        gap = (clip.forward_text(emb, eot).features - clip.forward_text(emb, eot, truncate=False).features).abs().max()
    print(f"{args.classes} prompts, torch threads {torch.get_num_threads()}, "
          f"truncated length {int(eot.max()) + 1} of {clip.context_length}")
    print(f"full {clip.context_length} tokens: {full * 1000:.0f} ms (median of {args.repeats})")
    print(f"truncated:       {short * 1000:.0f} ms (median of {args.repeats})")
    print(f"speed-up: {full / short:.1f}x; max |feature difference| {gap:.2e}")


if __name__ == "__main__":
    main()

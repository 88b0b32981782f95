"""Head roles by Concept Entropy (DeAR): TextSpan texts per deep vision head, concepts,
entropy, roles. Writes the role map JSON that TRAINER.DEAR.ROLE_MAP reads, a heatmap PNG
beside it, and prints a table.

  python tools/head_roles.py --backbone ViT-B/16 --images configs/datasets/imagenet.yaml \
      --root $DATA --out head_roles/ViT-B-16.json [--texts POOL] [--layers 9-12] [--n-texts N] \
      [--cluster labels|hdbscan]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backbone import ClipBackbone, load_clip  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from headroles.analysis import AnalysisSettings, default_layers, parse_layers, run_analysis  # noqa: E402
from headroles.concepts import CLUSTERINGS, DEFAULT_EMBEDDER, WEIGHTINGS  # noqa: E402
from headroles.images import clip_transform, evenly, image_paths  # noqa: E402
from headroles.pool import DEFAULT_POOL, read_pool  # noqa: E402
from headroles.report import save_role_map  # noqa: E402
from headroles.roles import THRESHOLD_MODES  # noqa: E402

CORE_ATTRIBUTES = ("color", "shape", "texture", "object", "position")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", required=True, help="MODEL.BACKBONE.NAME, e.g. ViT-B/16 or tiny-attr")
    p.add_argument("--random-init", action="store_true", help="random weights (smoke tests only)")
    p.add_argument("--images", required=True, help="a dataset config (configs/datasets/*.yaml, with --root) or an image folder")
    p.add_argument("--root", default="", help="DATA folder for a dataset config")
    p.add_argument("--split", default="train", choices=("train", "val", "test"))
    p.add_argument("--subsample", default="all", choices=("all", "base", "new"))
    p.add_argument("--max-images", type=int, default=1000, help="images used, spread evenly over the split (0 = all)")
    p.add_argument("--out", required=True, help="role map JSON to write (the heatmap goes beside it as .png)")
    p.add_argument("--texts", default=str(DEFAULT_POOL), help="text pool: concept<TAB>text lines, or plain lines with --cluster hdbscan")
    p.add_argument("--layers", default="", help="1-based vision layers, e.g. 9-12 (default: the last third)")
    p.add_argument("--n-texts", type=int, default=20, help="TextSpan texts per head")
    p.add_argument("--rank", type=int, default=0, help="span of a head's outputs (0 = head width)")
    p.add_argument("--min-residual", type=float, default=1e-3, help="stop picking once this share of variance is left")
    p.add_argument("--weighting", default="count", choices=WEIGHTINGS, help="P(l,h) from text counts or explained variance")
    p.add_argument("--cluster", default="labels", choices=CLUSTERINGS)
    p.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="sentence-transformers model for --cluster hdbscan")
    p.add_argument("--min-cluster-size", type=int, default=5)
    p.add_argument("--attributes", nargs="+", default=list(CORE_ATTRIBUTES), help="core attributes (concept names)")
    p.add_argument("--thresholds", default="tertiles", choices=THRESHOLD_MODES)
    p.add_argument("--low", type=float, default=0.4, help="absolute: normalised entropy <= low is Attribute")
    p.add_argument("--high", type=float, default=0.7, help="absolute: normalised entropy >= high is Generalization")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cpu")
    return p.parse_args(argv)


def settings_from(args: argparse.Namespace, clip: ClipBackbone) -> AnalysisSettings:
    layers = parse_layers(args.layers, clip.vision_layers) if args.layers else default_layers(clip.vision_layers)
    return AnalysisSettings(
        layers=layers, attributes=tuple(args.attributes), n_texts=args.n_texts, rank=args.rank,
        weighting=args.weighting, cluster=args.cluster, thresholds=args.thresholds, low=args.low, high=args.high,
        min_residual=args.min_residual, min_cluster_size=args.min_cluster_size, embedder=args.embedder,
    )


def run(clip: ClipBackbone, args: argparse.Namespace) -> dict:
    settings, pool = settings_from(args, clip), read_pool(args.texts)
    paths = evenly(image_paths(args.images, args.root, args.split, args.subsample), args.max_images)
    payload = run_analysis(clip, paths, clip_transform(clip.image_size), pool, settings, args.batch_size)
    save_role_map(payload, args.out)
    return payload


def main(argv=None) -> dict:
    args = parse_args(argv)
    clip = load_clip(args.backbone, pretrained=not args.random_init, precision="fp32", device=args.device)
    return run(clip, args)


if __name__ == "__main__":
    run_cli(main)

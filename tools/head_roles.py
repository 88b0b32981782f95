"""Head roles by Concept Entropy (DeAR): TextSpan texts per deep vision head, concepts,
entropy, roles. Computes a backbone's role map once, caches it in the user cache (where the
DeAR trainer's ROLE_MAP global finds it: same backbone, images, texts and settings), prints the
role table, and writes the JSON (+ heatmap PNG beside it) to --out if given. It ends with the options
that use a published copy of the map (TRAINER.DEAR.ROLE_MAP <url> TRAINER.DEAR.ROLE_MAP_SHA256 <sha>).

  python tools/head_roles.py --backbone ViT-B/16 --images configs/datasets/imagenet.yaml --root $DATA \
      [--split test] [--out head_roles/ViT-B-16.json] [--texts POOL|textspan] [--cluster labels|hdbscan] \
      [--layers 9-12] [--n-texts 20] [--max-images N]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backbone import ClipBackbone, load_clip, weights_fingerprint  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from engine.errors import UsageError  # noqa: E402
from engine.io import atomic_write  # noqa: E402
from headroles import textspan_pool  # noqa: E402
from headroles.analysis import BATCH_SIZE, AnalysisSettings, default_layers, parse_layers, run_analysis  # noqa: E402
from headroles.concepts import CLUSTERINGS, DEFAULT_EMBEDDER, WEIGHTINGS  # noqa: E402
from headroles.images import clip_transform, evenly, image_paths  # noqa: E402
from headroles.pool import DEFAULT_POOL, read_pool  # noqa: E402
from headroles.published import publish_line  # noqa: E402
from headroles.report import save_role_map, show  # noqa: E402
from headroles.roles import THRESHOLD_MODES  # noqa: E402
from headroles.store import AnalysisInput, cached_analysis  # noqa: E402

CORE_ATTRIBUTES = ("color", "shape", "texture", "object", "position")
DEFAULT_CLUSTER = "labels"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", required=True, help="MODEL.BACKBONE.NAME, e.g. ViT-B/16 or tiny-attr")
    p.add_argument("--random-init", action="store_true", help="random weights (smoke tests only; not cached)")
    p.add_argument("--images", required=True, help="a dataset config (configs/datasets/*.yaml, with --root) or an image folder")
    p.add_argument("--root", default=os.environ.get("DATA", "data"),
                   help="DATA folder for a dataset config (default: $DATA, else ./data, as the scripts)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"),
                   help="split of a dataset config (default test: ImageNet's validation images, as TextSpan)")
    p.add_argument("--subsample", default="all", choices=("all", "base", "new"))
    p.add_argument("--max-images", type=int, default=0, help="images used, spread evenly over the split (0 = all)")
    p.add_argument("--out", help="also write the role map JSON here (the heatmap goes beside it as .png)")
    p.add_argument("--no-cache", action="store_true", help="compute afresh and write --out only")
    p.add_argument("--texts", default=str(DEFAULT_POOL),
                   help="text pool: concept<TAB>text lines, plain lines (with --cluster hdbscan), or `textspan` "
                        "(TextSpan's pool, fetched by tools/download_textspan.py)")
    p.add_argument("--layers", default="", help="1-based vision layers, e.g. 9-12 (default: the last third)")
    p.add_argument("--n-texts", type=int, default=20, help="TextSpan texts per head")
    p.add_argument("--rank", type=int, default=0, help="span of a head's outputs (0 = head width)")
    p.add_argument("--min-residual", type=float, default=1e-3, help="stop picking once this share of variance is left")
    p.add_argument("--weighting", default="count", choices=WEIGHTINGS, help="P(l,h) from text counts or explained variance")
    p.add_argument("--cluster", default=DEFAULT_CLUSTER, choices=CLUSTERINGS,
                   help="concepts from the pool's labels, or SBERT + HDBSCAN (the paper's way)")
    p.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="sentence-transformers model for --cluster hdbscan")
    p.add_argument("--min-cluster-size", type=int, default=5, help="HDBSCAN's min_cluster_size")
    p.add_argument("--attributes", nargs="+", default=list(CORE_ATTRIBUTES), help="core attributes (concept names)")
    p.add_argument("--thresholds", default="tertiles", choices=THRESHOLD_MODES)
    p.add_argument("--low", type=float, default=0.4, help="absolute: normalised entropy <= low is Attribute")
    p.add_argument("--high", type=float, default=0.7, help="absolute: normalised entropy >= high is Generalization")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE,
                   help=f"images per forward pass (default {BATCH_SIZE}: under 2 GB on ViT-B/16; more on a GPU is faster)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if (args.no_cache or args.random_init) and not args.out:
        raise UsageError("--no-cache and --random-init analyses are not cached: pass --out FILE.json")
    return args


def settings_from(args: argparse.Namespace, clip: ClipBackbone) -> AnalysisSettings:
    layers = parse_layers(args.layers, clip.vision_layers) if args.layers else default_layers(clip.vision_layers)
    return AnalysisSettings(
        layers=layers, attributes=tuple(args.attributes), n_texts=args.n_texts, rank=args.rank,
        weighting=args.weighting, cluster=args.cluster, thresholds=args.thresholds, low=args.low, high=args.high,
        min_residual=args.min_residual, min_cluster_size=args.min_cluster_size, embedder=args.embedder,
    )


def run(clip: ClipBackbone, args: argparse.Namespace) -> dict:
    """The role map payload: from the cache (computed there first if needed) or, with --no-cache
    or --random-init, computed afresh; written to --out when given."""
    settings, pool = settings_from(args, clip), textspan_pool.resolve(args.texts)
    paths = evenly(image_paths(args.images, args.root, args.split, args.subsample), args.max_images)
    weights = weights_fingerprint(args.backbone, not args.random_init)
    if args.no_cache or args.random_init:
        payload = run_analysis(clip, paths, clip_transform(clip.image_size), read_pool(pool), settings, args.batch_size)
        payload = {"backbone": payload["backbone"], "weights": weights, **payload}
        show(payload)
        save_role_map(payload, args.out)
        print_publish_line(Path(args.out))
        return payload
    inp = AnalysisInput(args.backbone, weights, tuple(paths), pool, settings, {"kind": "global"})
    cached = cached_analysis(clip, inp, args.batch_size)
    payload = json.loads(cached.read_text())
    show(payload)
    if args.out and Path(args.out).resolve() != cached.resolve():
        for src, dest in ((cached.with_suffix(".png"), Path(args.out).with_suffix(".png")), (cached, Path(args.out))):
            atomic_write(dest, lambda tmp, src=src: shutil.copyfile(src, tmp))
        print(f"Role map: {args.out} (a copy of the cached {cached})")
    print_publish_line(Path(args.out) if args.out else cached)
    return payload


def print_publish_line(path: Path) -> None:
    """What users of a published copy of the map give DeAR (its bytes pinned by their SHA-256)."""
    print(f"To share this map, publish {path} and give its users the options (every run then reads these bytes):\n"
          f"  {publish_line(path)}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    clip = load_clip(args.backbone, pretrained=not args.random_init, precision="fp32", device=args.device)
    return run(clip, args)


if __name__ == "__main__":
    run_cli(main)

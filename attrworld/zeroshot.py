"""Zero-shot classification with a CLIP on attribute-world images, and the doc's figures.

`python -m attrworld.zeroshot --root DATA` prints the zero-shot top-1 of the committed
tiny-attr weights on each derived dataset's test split (all / base / new classes),
the table recorded in docs/TINY_CLIP.md.
"""
from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import CLIP
from PIL import Image

import datasets.attribute_world  # noqa: F401  (registers the Attr* datasets)
from attrworld import derived
from backbone.model_configs import WEIGHTS_DIR, build_model, build_tokenizer, read_config
from engine.config import get_cfg
from engine.data.base import DATASET_REGISTRY

MODEL_NAME = "tiny-attr"
TEMPLATES = ("a photo of a {}.",)  # CoOp's single prompt, the one prompt learners start from
# The pretraining caption templates (attrworld/captions.py) as prompts, averaged (CLIP's ensembling).
ENSEMBLE = ("a photo of a {}.", "a {}.", "there is a {}.", "an image of a {} on a gray background.",
            "a picture showing a {}.", "a rendering of a {}.", "{}")
_MEAN = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> CLIP-normalised float [B, 3, H, W]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255
    return (x - _MEAN) / _STD


def load_tiny_attr(weights: Path | None = None) -> CLIP:
    """The tiny-attr CLIP in fp32 eval mode, from `weights` (default: the committed file)."""
    model = build_model(read_config(MODEL_NAME))
    state = torch.load(weights or WEIGHTS_DIR / f"{MODEL_NAME}.pt", map_location="cpu", weights_only=True)
    model_state = model.state_dict()
    model.load_state_dict({k: v.to(model_state[k].dtype) for k, v in state.items()})
    return model.eval()


@torch.no_grad()
def image_features(model: CLIP, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    feats = [model.encode_image(to_input(images[i:i + batch_size]), normalize=True)
             for i in range(0, len(images), batch_size)]
    return torch.cat(feats)


@torch.no_grad()
def text_classifier(model: CLIP, classnames: Sequence[str], templates: Sequence[str] = TEMPLATES) -> torch.Tensor:
    """[C, D] unit class embeddings, each the normalised mean over templates (CLIP's recipe)."""
    tokenizer = build_tokenizer({"text_cfg": {"context_length": model.context_length}})
    rows = []
    for name in classnames:
        emb = model.encode_text(tokenizer([t.format(name) for t in templates]), normalize=True).mean(0)
        rows.append(emb / emb.norm())
    return torch.stack(rows)


def predict(model: CLIP, images: np.ndarray, classnames: Sequence[str],
            templates: Sequence[str] = TEMPLATES) -> torch.Tensor:
    """[N, C] cosine logits of images against the class prompts."""
    return image_features(model, images) @ text_classifier(model, classnames, templates).T


def load_images(paths: Sequence[str]) -> np.ndarray:
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])


def dataset_accuracy(model: CLIP, dataset_name: str, root: Path, subsample: str = "all",
                     templates: Sequence[str] = TEMPLATES) -> float:
    """Zero-shot top-1 (%) on the test split of a derived dataset, among its (sub)set of classes."""
    cfg = get_cfg()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = dataset_name
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    with contextlib.redirect_stdout(io.StringIO()):  # the pipeline's progress lines would split the table
        dataset = DATASET_REGISTRY.get(dataset_name)(cfg)
    logits = predict(model, load_images([d.impath for d in dataset.test]), dataset.classnames, templates)
    labels = torch.tensor([d.label for d in dataset.test])
    return 100.0 * (logits.argmax(1) == labels).float().mean().item()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="DATASET.ROOT; datasets are generated there if absent")
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--datasets", nargs="*", default=list(derived.DATASETS))
    args = parser.parse_args(argv)
    model = load_tiny_attr(args.weights)
    for title, templates in (("single prompt", TEMPLATES), ("caption-template ensemble", ENSEMBLE)):
        print(f"\nZero-shot top-1 (%), test split, {title}: {' | '.join(templates)}\n")
        print("| dataset | classes | chance (all) | all | base | new |\n|---|---|---|---|---|---|")
        for name in args.datasets:
            acc = {s: dataset_accuracy(model, name, args.root, s, templates) for s in ("all", "base", "new")}
            n = len(derived.DATASETS[name].classes())
            print(f"| {name} | {n} | {100 / n:.1f} | {acc['all']:.1f} | {acc['base']:.1f} | {acc['new']:.1f} |")


if __name__ == "__main__":
    main()

"""Pretraining batches generated on the fly, a pure function of (seed, step).

Each batch restricts some attributes to a few values. With every colour in a batch,
colour alone separates most captions and contrastive training never needs shape
(shared/notes/attribute-world-prototype.md); so half the batches hold one or two colours
and textures and a single size, leaving shape (always captioned) and position as what
tells the objects apart, most others hold two or three colours, and a few are unrestricted
so every attribute still matters somewhere. Captions within a batch are distinct, so
ClipLoss's one-positive targets never contain a duplicate caption.
"""
from __future__ import annotations

import numpy as np

from attrworld.captions import caption
from attrworld.render import render
from attrworld.spec import ATTRIBUTES, Attributes, sample_attributes

# (probability, {attribute: (min, max) number of values allowed in the batch})
BATCH_KINDS: tuple[tuple[float, dict[str, tuple[int, int]]], ...] = (
    (0.5, {"color": (1, 2), "texture": (1, 2), "size": (1, 1)}),
    (0.35, {"color": (2, 3)}),
    (0.15, {}),
)
MAX_CAPTION_TRIES = 20


def batch_values(rng: np.random.Generator) -> dict[str, tuple[str, ...]]:
    """The values each restricted attribute may take in one batch."""
    probs = np.array([p for p, _ in BATCH_KINDS])
    _, limits = BATCH_KINDS[int(rng.choice(len(BATCH_KINDS), p=probs / probs.sum()))]
    allowed = {}
    for name, (lo, hi) in limits.items():
        values = ATTRIBUTES[name]
        k = int(rng.integers(lo, hi + 1))
        allowed[name] = tuple(values[i] for i in sorted(rng.choice(len(values), size=k, replace=False)))
    return allowed


def training_batch(seed: int, step: int, batch_size: int) -> tuple[np.ndarray, list[str], list[Attributes]]:
    """uint8 images [B, H, W, 3], their distinct captions and attributes for one step."""
    allowed = batch_values(np.random.default_rng([seed, step]))
    images, captions, attrs_list = [], [], []
    seen: set[str] = set()
    for i in range(batch_size):
        item_rng = np.random.default_rng([seed, step, i])
        for _ in range(MAX_CAPTION_TRIES):
            fixed = {name: values[int(item_rng.integers(len(values)))] for name, values in allowed.items()}
            attrs = sample_attributes(item_rng, **fixed)
            text, _ = caption(attrs, item_rng)
            if text not in seen:
                break
        else:
            raise RuntimeError(f"no distinct caption after {MAX_CAPTION_TRIES} draws; batch_size too large?")
        seen.add(text)
        image, _ = render(attrs, item_rng)
        images.append(np.asarray(image))
        captions.append(text)
        attrs_list.append(attrs)
    return np.stack(images), captions, attrs_list

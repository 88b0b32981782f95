"""Early-warning checks during pretraining: linear probes and zero-shot on a fixed pool.

A probe reading shape from the image features tells whether the encoder sees shape at all,
independent of the text tower; the zero-shot figures tell whether the two towers agree.
"""
from __future__ import annotations

import numpy as np
import torch
from open_clip.model import CLIP

from attrworld.render import render
from attrworld.spec import ATTRIBUTES, COLORS, SHAPES, TEXTURES, Attributes, sample_attributes
from attrworld.zeroshot import image_features, text_classifier

PROBED = ("shape", "color", "texture", "size", "position")


def render_pool(seed: int, n: int) -> tuple[np.ndarray, list[Attributes]]:
    """n images with uniformly drawn attributes, image i a function of (seed, i) only."""
    images, attrs = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        a = sample_attributes(rng)
        images.append(np.asarray(render(a, rng)[0]))
        attrs.append(a)
    return np.stack(images), attrs


def ridge_probe_accuracy(feats: torch.Tensor, labels: np.ndarray, n_train: int, ridge: float = 1e-2) -> float:
    """Top-1 (%) of a closed-form ridge regression onto one-hot labels, fitted on the first n_train."""
    x = torch.cat([feats, torch.ones(len(feats), 1)], 1).double()
    y = torch.nn.functional.one_hot(torch.as_tensor(labels), int(labels.max()) + 1).double()
    xt, yt = x[:n_train], y[:n_train]
    w = torch.linalg.solve(xt.T @ xt + ridge * torch.eye(x.shape[1], dtype=x.dtype), xt.T @ yt)
    pred = (x[n_train:] @ w).argmax(1).numpy()
    return 100.0 * float((pred == labels[n_train:]).mean())


def attribute_report(model: CLIP, images: np.ndarray, attrs: list[Attributes], n_train: int) -> dict[str, float]:
    """Probe accuracy per attribute plus zero-shot colour+shape (64-way) and texture+shape (32-way)."""
    feats = image_features(model, images)
    report = {}
    for name in PROBED:
        labels = np.array([ATTRIBUTES[name].index(getattr(a, name)) for a in attrs])
        report[f"probe_{name}"] = ridge_probe_accuracy(feats, labels, n_train)
    pairs = [(c, s) for c in COLORS for s in SHAPES]
    pred = (feats @ text_classifier(model, [f"{c} {s}" for c, s in pairs]).T).argmax(1)
    report["zs_color_shape"] = _pct([pairs[p] == (a.color, a.shape) for p, a in zip(pred, attrs)])
    report["zs_shape"] = _pct([pairs[p][1] == a.shape for p, a in zip(pred, attrs)])
    report["zs_color"] = _pct([pairs[p][0] == a.color for p, a in zip(pred, attrs)])
    pairs = [(t, s) for t in TEXTURES for s in SHAPES]
    pred = (feats @ text_classifier(model, [f"{t} {s}" for t, s in pairs]).T).argmax(1)
    report["zs_texture"] = _pct([pairs[p][0] == a.texture for p, a in zip(pred, attrs)])
    return report


def _pct(hits: list[bool]) -> float:
    return round(100.0 * sum(hits) / len(hits), 2)

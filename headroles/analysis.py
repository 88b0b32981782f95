"""Concept Entropy of the deep vision heads, computed once and offline on the frozen backbone.

Per head of the analysed layers: its direct contribution to the image representation (the
class-token output through ln_post, linearised, and the projection), streamed over the images
into fixed-size moments, TextSpan's picks from the text pool, their concepts, the head's
distribution P(l, h) over concepts, its entropy H(l, h) = -sum p log2 p, and the role that
follows. The result is the role map's JSON payload.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor
from tqdm import tqdm

from backbone import ClipBackbone, TowerHooks
from headroles.concepts import (CLUSTERINGS, DEFAULT_EMBEDDER, Concepts, distribution, entropy_bits, hdbscan_concepts,
                                label_concepts)
from headroles.images import image_batches
from headroles.pool import TextPool
from headroles.roles import assign_role, entropy_cuts
from headroles.textspan import HeadMoments, Pick, textspan_from_covariance


@dataclass(frozen=True)
class AnalysisSettings:
    layers: tuple[int, ...]  # 1-based vision layers
    attributes: tuple[str, ...]  # core attributes: low-entropy heads of these become Attribute heads
    n_texts: int = 20
    rank: int = 0  # span of a head's outputs; 0 = the head width (TextSpan's OV rank)
    weighting: str = "count"
    cluster: str = "labels"
    thresholds: str = "tertiles"
    low: float = 0.4  # absolute cuts on the normalised entropy
    high: float = 0.7
    min_residual: float = 1e-3
    min_cluster_size: int = 5
    embedder: str = DEFAULT_EMBEDDER


def default_layers(vision_layers: int) -> tuple[int, ...]:
    """The last third of the layers (ViT-B/16: 9-12, the paper's deep layers)."""
    return tuple(range(vision_layers - math.ceil(vision_layers / 3) + 1, vision_layers + 1))


def parse_layers(text: str, vision_layers: int) -> tuple[int, ...]:
    """'9-12' or '10,12' (1-based) -> (9, 10, 11, 12)."""
    layers: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        layers += range(int(first), int(last or first) + 1)
    bad = [layer for layer in layers if not 1 <= layer <= vision_layers]
    if bad:
        raise ValueError(f"--layers {text}: layers are 1-based in 1..{vision_layers}, got {bad}")
    return tuple(sorted(set(layers)))


@torch.no_grad()
def head_moments(clip: ClipBackbone, batches: Iterable[Tensor], layers: Sequence[int], total: int | None = None) -> HeadMoments:
    """Moments of every analysed head's direct contribution to the image features, over all
    images; a progress bar with an ETA when the batch count is known."""
    zero = [layer - 1 for layer in layers]
    moments = HeadMoments(len(layers) * clip.vision_heads, clip.embed_dim, clip.device)
    for images in tqdm(batches, total=total, desc="Head analysis", unit="batch", disable=total is None):
        out = clip.forward_image(images.to(clip.device, clip.dtype), TowerHooks(capture_heads=set(zero)))
        parts = torch.stack([out.head_outputs[layer][:, 0] for layer in zero], dim=1)
        direct = clip.image_head_direct(parts, out.tokens[:, 0])  # [B, layers, heads, embed_dim]
        moments.add(direct.flatten(1, 2))
    return moments


@torch.no_grad()
def encode_texts(clip: ClipBackbone, texts: Sequence[str], batch_size: int = 256) -> Tensor:
    """Unit text embeddings [T, embed_dim]."""
    feats = [clip.encode_text(clip.tokenize(list(texts[i:i + batch_size]))).float().cpu()
             for i in range(0, len(texts), batch_size)]
    return torch.nn.functional.normalize(torch.cat(feats), dim=-1)


def concepts_for(pool: TextPool, picks: Iterable[list[Pick]], s: AnalysisSettings) -> Concepts:
    if s.cluster == "labels":
        return label_concepts(pool)
    if s.cluster == "hdbscan":
        indices = [p.index for head in picks for p in head]
        return hdbscan_concepts(pool, indices, s.attributes, s.min_cluster_size, embedder=s.embedder)
    raise ValueError(f"--cluster must be one of {CLUSTERINGS}, got {s.cluster!r}")


def analyse_heads(moments: HeadMoments, n_heads: int, text_features: Tensor, pool: TextPool, s: AnalysisSettings,
                  rank: int) -> dict:
    """Role-map payload from the moments of len(s.layers) * n_heads heads (layer-major) and unit texts [T, D]."""
    if moments.sum.shape[0] != len(s.layers) * n_heads:
        raise ValueError(f"moments cover {moments.sum.shape[0]} heads, settings name {len(s.layers)} layers x {n_heads}")
    picks = {(layer, h): textspan_from_covariance(moments.covariance(i * n_heads + h), text_features, s.n_texts, rank,
                                                  s.min_residual)
             for i, layer in enumerate(s.layers) for h in range(n_heads)}
    concepts = concepts_for(pool, picks.values(), s)
    print(f"Concepts ({s.cluster}): {len(concepts.names)} found"
          + (f", {sum(c is None for c in concepts.of_text.values())} of {len(concepts.of_text)} texts left as noise"
             if s.cluster == "hdbscan" else ""))
    n_concepts = max(len(concepts.names), 2)
    heads = []
    for (layer, h), head_picks in picks.items():
        p = distribution(head_picks, concepts, s.weighting)
        bits = entropy_bits(p, n_concepts)
        dominant = max(p, key=p.get) if p else None
        heads.append({
            "layer": layer, "head": h, "entropy": bits, "normalized_entropy": bits / math.log2(n_concepts),
            "dominant_concept": dominant,
            "distribution": {k: round(v, 4) for k, v in p.items() if v > 0},
            "top_texts": [{"text": pool.texts[q.index], "concept": concepts.of_text.get(q.index), "variance": q.variance}
                          for q in head_picks],
        })
    cuts = entropy_cuts([e["normalized_entropy"] for e in heads], s.thresholds, s.low, s.high)
    for e in heads:
        label = concepts.label_of.get(e["dominant_concept"]) if e["dominant_concept"] else None
        e["role"], e["attribute"] = assign_role(e["normalized_entropy"], label, s.attributes, cuts)
    return {
        "layers": list(s.layers), "heads_per_layer": n_heads, "concepts": list(concepts.names),
        "clusters": concepts.summary(s.cluster), "attributes": list(s.attributes),
        "thresholds": {"mode": s.thresholds, "low_cut": cuts[0], "high_cut": cuts[1]},
        "settings": {**asdict(s), "rank": rank, "text_pool": pool.source},
        "heads": heads,
    }


def run_analysis(clip: ClipBackbone, paths: Sequence[str], transform: Callable, pool: TextPool,
                 s: AnalysisSettings, batch_size: int = 64) -> dict:
    """The whole analysis on images at `paths`; returns the role-map payload."""
    start = time.time()
    print(f"Head analysis: {len(paths)} images, layers {list(s.layers)}, {len(pool.texts)} texts from {pool.source}")
    batches = image_batches(paths, transform, batch_size)
    moments = head_moments(clip, batches, s.layers, total=math.ceil(len(paths) / batch_size))
    texts = encode_texts(clip, pool.texts)
    rank = s.rank or clip.vision_width // clip.vision_heads
    payload = analyse_heads(moments, clip.vision_heads, texts, pool, s, rank)
    payload = {"backbone": clip.name, "images": len(paths), **payload}
    print(f"Head analysis done in {time.time() - start:.1f}s")
    return payload

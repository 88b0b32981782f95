"""Concept Entropy of the deep vision heads, computed once and offline on the frozen backbone.

Per head of the analysed layers: its direct contribution to the image representation (the
class-token output through ln_post, linearised, and the projection), streamed over the images
into fixed-size moments, TextSpan's picks from the text pool, their concepts, the head's
distribution P(l, h) over concepts, its entropy H(l, h) = -sum p log2 p, and the role that
follows. The result is the role map's JSON payload.

Its cost is stated before the long part: after the first batch, the time the images will take on
this device and the peak memory, which stays that of one batch whatever the image count (only the
class token's head outputs are kept, and only their moments survive a batch). Both phases, images
and texts, print progress lines; with a `resume` file the moments are saved there as they grow,
and an interrupted analysis continues from the images they cover.
"""
from __future__ import annotations

import math
import resource
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor

from backbone import ClipBackbone, TowerHooks
from engine.checkpoint import load_tensors, remove_tensors, save_tensors
from engine.errors import UserError
from engine.progress import duration, progress
from headroles.concepts import (
    CLUSTERINGS,
    DEFAULT_EMBEDDER,
    Concepts,
    distribution,
    entropy_bits,
    hdbscan_concepts,
    label_concepts,
)
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


SAVE_SECONDS = 60.0  # how often a resumable analysis saves its moments
# Images per forward pass: on ViT-B/16 (fp32, CPU) a batch of 16 adds about 0.4 GB to the model, 64
# adds 0.8 GB, for the same time per image; the whole analysis then stays under 2 GB (docs/DEAR.md).
BATCH_SIZE = 16


class MomentsFile:
    """The moments of an analysis in progress, saved as they grow (atomically) under `identity`,
    the caller's complete description of the analysis: a file with another identity is ignored."""

    def __init__(self, path: Path, identity: str, every: float | None = None):
        self.path, self.identity = Path(path), identity
        self.every = SAVE_SECONDS if every is None else every
        self.saved_at = time.monotonic()

    def load(self, moments: HeadMoments) -> int:
        """Images already covered (their moments loaded into `moments`), 0 if none to resume."""
        try:
            state = load_tensors(self.path, "the saved moments")
        except UserError:  # none, damaged or not ours: start over
            return 0
        if not isinstance(state, dict) or state.get("identity") != self.identity:
            return 0
        if any(not isinstance(state.get(k), Tensor) or state[k].shape != getattr(moments, k).shape
               for k in ("sum", "outer")):
            return 0
        moments.count = int(state["count"])
        moments.sum.copy_(state["sum"])
        moments.outer.copy_(state["outer"])
        return int(state["images"])

    def save(self, moments: HeadMoments, images: int, force: bool = False) -> None:
        if not force and time.monotonic() - self.saved_at < self.every:
            return
        state = {"identity": self.identity, "images": images, "count": moments.count,
                 "sum": moments.sum.cpu(), "outer": moments.outer.cpu()}
        save_tensors(state, self.path)
        self.saved_at = time.monotonic()

    def remove(self) -> None:
        remove_tensors(self.path)


def peak_memory_gb(device: torch.device) -> float:
    """The process's peak memory so far: resident set on a CPU, allocated tensors on a GPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB


@torch.no_grad()
def batch_contributions(clip: ClipBackbone, images: Tensor, layers: Sequence[int]) -> Tensor:
    """[B, layers * heads, embed_dim]: every analysed head's direct contribution to the image features."""
    zero = [layer - 1 for layer in layers]
    out = clip.forward_image(images.to(clip.device, clip.dtype), TowerHooks(capture_heads=set(zero),
                                                                            capture_tokens=slice(0, 1)))
    parts = torch.stack([out.head_outputs[layer][:, 0] for layer in zero], dim=1)
    return clip.image_head_direct(parts, out.tokens[:, 0]).flatten(1, 2)  # [B, layers, heads, D] -> [B, L*H, D]


@torch.no_grad()
def head_moments(clip: ClipBackbone, paths: Sequence[str], transform: Callable, layers: Sequence[int],
                 batch_size: int = BATCH_SIZE, resume: MomentsFile | None = None) -> HeadMoments:
    """Moments of every analysed head's direct contribution to the image features over the images
    at `paths`, streamed a batch at a time; progress lines, and the cost once the first batch is done."""
    moments = HeadMoments(len(layers) * clip.vision_heads, clip.embed_dim, clip.device)
    done = resume.load(moments) if resume is not None else 0
    if done:
        print(f"Head analysis: resuming from the saved moments of {done} of {len(paths)} images ({resume.path})")
    rest = paths[done:]
    total = math.ceil(len(rest) / batch_size)
    started = time.monotonic()
    for i, images in enumerate(progress(image_batches(rest, transform, batch_size), "Head analysis, images", total)):
        moments.add(batch_contributions(clip, images, layers))
        done += len(images)
        if i == 0 and total > 1:
            per_image = (time.monotonic() - started) / len(images)
            print(f"Head analysis: about {duration(per_image * len(rest))} for {len(rest)} images on this device "
                  f"({per_image:.3f} s per image on the first batch of {len(images)}), then the text phase; peak memory "
                  f"{peak_memory_gb(clip.device):.2f} GB so far (it does not grow with the number of images)")
        if resume is not None:
            resume.save(moments, done, force=done == len(paths))
    return moments


@torch.no_grad()
def encode_texts(clip: ClipBackbone, texts: Sequence[str], batch_size: int = 256) -> Tensor:
    """Unit text embeddings [T, embed_dim], with progress lines."""
    starts = range(0, len(texts), batch_size)
    feats = [clip.encode_text(clip.tokenize(list(texts[i:i + batch_size]))).float().cpu()
             for i in progress(starts, "Head analysis, texts", len(starts))]
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
                 s: AnalysisSettings, batch_size: int = BATCH_SIZE, resume: MomentsFile | None = None) -> dict:
    """The whole analysis on images at `paths`; returns the role-map payload. With `resume`, the
    image moments are saved as they grow and an interrupted run continues from them."""
    start = time.time()
    print(f"Head analysis: {len(paths)} images in batches of {batch_size}, layers {list(s.layers)}, "
          f"{len(pool.texts)} texts from {pool.source}")
    moments = head_moments(clip, paths, transform, s.layers, batch_size, resume)
    texts = encode_texts(clip, pool.texts)
    rank = s.rank or clip.vision_width // clip.vision_heads
    payload = analyse_heads(moments, clip.vision_heads, texts, pool, s, rank)
    payload = {"backbone": clip.name, "images": len(paths), **payload}
    print(f"Head analysis done in {time.time() - start:.1f}s (peak memory {peak_memory_gb(clip.device):.2f} GB)")
    return payload

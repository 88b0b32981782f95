"""Concepts of the texts TextSpan picked, each head's distribution over them, and its entropy.

`labels`: a text's concept is its label in the pool (no model needed). `hdbscan`: the paper's
way, sentence embeddings (SBERT) clustered with HDBSCAN; a cluster is named after the majority
label of its texts when the pool is labelled (so it can still map to a core attribute), and
texts HDBSCAN leaves as noise count for no concept (inferred).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from headroles.pool import TextPool
from headroles.textspan import Pick

CLUSTERINGS = ("labels", "hdbscan")
WEIGHTINGS = ("count", "variance")
DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Concepts:
    names: tuple[str, ...]
    of_text: dict[int, str | None]  # pool index -> concept name (None: HDBSCAN noise)
    label_of: dict[str, str | None]  # concept name -> pool label it stands for (None if unlabelled)


def label_concepts(pool: TextPool) -> Concepts:
    if pool.labels is None:
        raise ValueError(f"Text pool {pool.source} has no concept labels (`concept<TAB>text` lines); "
                         "use --cluster hdbscan or a labelled pool such as headroles/text_pool.tsv")
    names = tuple(pool.concepts)
    return Concepts(names, dict(enumerate(pool.labels)), {n: n for n in names})


def _sbert(model_name: str) -> Callable[[list[str]], np.ndarray]:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ImportError("--cluster hdbscan needs sentence-transformers: pip install sentence-transformers "
                          "(or use --cluster labels with the labelled pool)") from e
    model = SentenceTransformer(model_name)
    return lambda texts: model.encode(texts, normalize_embeddings=True)


def _hdbscan(min_cluster_size: int) -> Callable[[np.ndarray], np.ndarray]:
    try:
        from hdbscan import HDBSCAN
    except ImportError:
        try:
            from sklearn.cluster import HDBSCAN
        except ImportError as e:
            raise ImportError("--cluster hdbscan needs hdbscan or scikit-learn>=1.3: pip install hdbscan") from e
    return lambda vectors: HDBSCAN(min_cluster_size=min_cluster_size).fit_predict(vectors)


def hdbscan_concepts(pool: TextPool, indices: Sequence[int], min_cluster_size: int = 5,
                     embed: Callable[[list[str]], np.ndarray] | None = None,
                     cluster: Callable[[np.ndarray], np.ndarray] | None = None,
                     embedder: str = DEFAULT_EMBEDDER) -> Concepts:
    """Cluster the picked texts (pool indices) as the paper does: SBERT + HDBSCAN."""
    indices = sorted(set(indices))
    embed = embed or _sbert(embedder)
    cluster = cluster or _hdbscan(min_cluster_size)
    ids = np.asarray(cluster(embed([pool.texts[i] for i in indices])))
    names: dict[int, str] = {}
    label_of: dict[str, str | None] = {}
    seen: Counter[str] = Counter()
    for k in sorted(set(ids.tolist()) - {-1}):
        members = [i for i, c in zip(indices, ids) if c == k]
        label = Counter(pool.labels[i] for i in members).most_common(1)[0][0] if pool.labels else None
        base = label or f"cluster{k}"
        seen[base] += 1
        name = base if seen[base] == 1 else f"{base} ({seen[base]})"
        names[k], label_of[name] = name, label
    of_text = {i: names.get(int(c)) for i, c in zip(indices, ids)}
    return Concepts(tuple(label_of), of_text, label_of)


def distribution(picks: Sequence[Pick], concepts: Concepts, weighting: str = "count") -> dict[str, float]:
    """P(l, h) over concept names: share of picked texts (count) or of explained variance."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    mass = {n: 0.0 for n in concepts.names}
    for p in picks:
        name = concepts.of_text.get(p.index)
        if name is not None:
            mass[name] += 1.0 if weighting == "count" else p.variance
    total = sum(mass.values())
    return {n: m / total for n, m in mass.items()} if total > 0 else {}


def entropy_bits(p: dict[str, float], n_concepts: int) -> float:
    """H = -sum p log2 p; a head with no explained variance gets the maximum, log2(n_concepts)."""
    if not p:
        return math.log2(n_concepts)
    return -sum(v * math.log2(v) for v in p.values() if v > 0)

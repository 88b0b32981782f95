"""TextSpan (Gandelsman et al., ICLR 2024): the texts that explain a head's direct contribution.

Greedy and variance-explaining: project the (unit) text embeddings onto the span of the head's
outputs (its top `rank` principal directions), then repeatedly pick the text whose direction
carries the most variance of the head's outputs and remove that direction from both the
outputs and the remaining texts. Run in the rank-dimensional span itself (with the outputs'
covariance), which gives the same picks as working in the embedding space at a fraction of
the cost.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Pick:
    index: int  # into the text pool
    variance: float  # variance of the head's outputs along the text's direction, removed by the pick


def textspan(outputs: Tensor, texts: Tensor, n_texts: int, rank: int, min_residual: float = 1e-3) -> list[Pick]:
    """Up to `n_texts` picks for outputs [N, D] from texts [T, D].

    Stops early once the unexplained variance is below `min_residual` of the total: texts
    picked after that explain nothing (inferred; TextSpan always takes a fixed count).
    """
    x = outputs.double() - outputs.double().mean(0)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    basis = vh[: min(rank, vh.shape[0])]  # [r, D], orthonormal rows
    cov = basis @ (x.T @ x / x.shape[0]) @ basis.T  # [r, r]
    t = texts.double() @ basis.T  # texts projected onto the span, in its coordinates
    total = float(cov.trace())
    picks: list[Pick] = []
    if total <= 0:
        return picks
    for _ in range(n_texts):
        if float(cov.trace()) <= min_residual * total:
            break
        score = ((t @ cov) * t).sum(1)  # variance of outputs @ text, as TextSpan ranks them
        best = int(score.argmax())
        if score[best] <= 0:
            break
        u = t[best] / t[best].norm()
        picks.append(Pick(best, float(u @ cov @ u)))
        keep = torch.eye(len(u), dtype=u.dtype) - torch.outer(u, u)
        cov = keep @ cov @ keep
        t = t @ keep
    return picks

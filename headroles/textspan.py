"""TextSpan (Gandelsman et al., ICLR 2024): the texts that explain a head's direct contribution.

Greedy and variance-explaining: project the (unit) text embeddings onto the span of the head's
outputs (its top `rank` principal directions), then repeatedly pick the text whose direction
carries the most variance of the head's outputs and remove that direction from both the
outputs and the remaining texts. Everything it needs of the outputs is their covariance, so
the analysis streams any number of images through fixed-size moments (`HeadMoments`) and
runs the selection in the rank-dimensional span, which gives the same picks as working with
the outputs in the embedding space (tested against that definition).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Pick:
    index: int  # into the text pool
    variance: float  # variance of the head's outputs along the text's direction, removed by the pick


class HeadMoments:
    """Running count, sum and sum of outer products of outputs [N, heads, D], in float64, so
    that memory does not grow with the number of images."""

    def __init__(self, heads: int, dim: int, device: torch.device | str = "cpu"):
        self.count = 0
        self.sum = torch.zeros(heads, dim, dtype=torch.float64, device=device)
        self.outer = torch.zeros(heads, dim, dim, dtype=torch.float64, device=device)

    def add(self, outputs: Tensor) -> None:
        x = outputs.to(self.sum.device, torch.float64)
        self.count += x.shape[0]
        self.sum += x.sum(0)
        self.outer += torch.einsum("nhd,nhe->hde", x, x)

    def covariance(self, head: int) -> Tensor:
        """[D, D] covariance (1/N) of head `head`'s outputs, on the CPU."""
        mean = self.sum[head] / self.count
        return (self.outer[head] / self.count - torch.outer(mean, mean)).cpu()


def covariance(outputs: Tensor) -> Tensor:
    """[D, D] covariance (1/N) of outputs [N, D]."""
    x = outputs.double() - outputs.double().mean(0)
    return x.T @ x / x.shape[0]


def textspan(outputs: Tensor, texts: Tensor, n_texts: int, rank: int, min_residual: float = 1e-3) -> list[Pick]:
    """TextSpan's picks for outputs [N, D] from texts [T, D] (see `textspan_from_covariance`)."""
    return textspan_from_covariance(covariance(outputs), texts, n_texts, rank, min_residual)


def textspan_from_covariance(cov: Tensor, texts: Tensor, n_texts: int, rank: int,
                             min_residual: float = 1e-3) -> list[Pick]:
    """Up to `n_texts` picks from texts [T, D] for outputs of covariance `cov` [D, D].

    The span is the top `rank` principal directions (eigenvectors of the covariance; directions
    without variance are left out). Stops early once the unexplained variance is below
    `min_residual` of the total: texts picked after that explain nothing (inferred; TextSpan
    always takes a fixed count).
    """
    cov = cov.double()
    values, vectors = torch.linalg.eigh(cov)
    picks: list[Pick] = []
    keep = min(rank, int((values > values.max() * 1e-12).sum()))
    if keep == 0 or float(values.max()) <= 0:
        return picks
    basis = vectors[:, -keep:].flip(1).T  # [r, D], orthonormal rows, largest variance first
    cov = basis @ cov @ basis.T  # [r, r]
    t = texts.double() @ basis.T  # texts projected onto the span, in its coordinates
    total = float(cov.trace())
    for _ in range(n_texts):
        if float(cov.trace()) <= min_residual * total:
            break
        score = ((t @ cov) * t).sum(1)  # variance of outputs @ text, as TextSpan ranks them
        best = int(score.argmax())
        if score[best] <= 0:
            break
        u = t[best] / t[best].norm()
        picks.append(Pick(best, float(u @ cov @ u)))
        deflate = torch.eye(len(u), dtype=u.dtype) - torch.outer(u, u)
        cov = deflate @ cov @ deflate
        t = t @ deflate
    return picks

"""DeAR's learnable tokens: one shared latent mapped per deep layer to each tower's width.

The generation follows MMRL++ (inferred; DeAR's Figure 2 has MMRL++'s structure): a shared
latent [n, rep_dim] goes through, for each deep layer l, W + A_l B_l (W shared and learnable,
A_l B_l a low-rank residual starting at zero) plus a per-layer bias. The vision side uses the
first A rows (one attribute token per core attribute), the text side the first K rows.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from backbone import insert_tokens, replace_tokens


class SharedResidualAligner(nn.Module):
    """latent [n, rep_dim] -> [layers, n, width] with a shared matrix and per-layer residuals."""

    def __init__(self, rep_dim: int, width: int, layers: int, rank: int):
        super().__init__()
        linear = nn.Linear(rep_dim, width)  # PyTorch's default init for the shared map
        self.weight = nn.Parameter(linear.weight.detach().clone())
        self.bias = nn.Parameter(linear.bias.detach().clone().repeat(layers, 1))
        self.rank = rank
        if rank > 0:
            down = torch.empty(layers, width, rank)
            for d in down:
                nn.init.kaiming_uniform_(d, a=math.sqrt(5))
            self.down = nn.Parameter(down)
            self.up = nn.Parameter(torch.zeros(layers, rank, rep_dim))

    def forward(self, latent: Tensor) -> Tensor:
        weight = self.weight + self.down @ self.up if self.rank > 0 else self.weight.expand(self.bias.shape[0], -1, -1)
        return torch.einsum("nr,lwr->lnw", latent, weight) + self.bias[:, None]


class DeepTokens(nn.Module):
    """The shared latent and its per-layer images in the vision and text towers."""

    def __init__(self, n_vision: int, n_text: int, rep_dim: int, vision_width: int, text_width: int,
                 vision_layers: int, text_layers: int, rank: int):
        super().__init__()
        self.n_vision, self.n_text = n_vision, n_text
        self.latent = nn.Parameter(torch.empty(max(n_vision, n_text), rep_dim))
        nn.init.normal_(self.latent, std=0.02)
        self.to_vision = SharedResidualAligner(rep_dim, vision_width, vision_layers, rank) if n_vision else None
        self.to_text = SharedResidualAligner(rep_dim, text_width, text_layers, rank) if n_text else None

    def vision(self) -> Tensor | None:
        """[deep vision layers, A, vision_width], or None without attribute tokens."""
        return self.to_vision(self.latent[:self.n_vision]) if self.to_vision is not None else None

    def text(self) -> Tensor | None:
        """[deep text layers, K, text_width], or None without text tokens."""
        return self.to_text(self.latent[:self.n_text]) if self.to_text is not None else None


def deep_insertion(tokens: Tensor, first: int, position: int, beta: float) -> Callable[[int, Tensor], Tensor]:
    """A `before_block` hook: insert tokens[0] before index `position` at 0-based layer `first`;
    at later layer first+d the token input is beta * tokens[d] + (1 - beta) * (previous output)."""
    n = tokens.shape[1]

    def before_block(layer: int, x: Tensor) -> Tensor:
        d = layer - first
        if d < 0:
            return x
        if d == 0:
            return insert_tokens(x, position, tokens[0])
        previous = x[:, position:position + n]
        return replace_tokens(x, position, beta * tokens[d].to(x.dtype) + (1 - beta) * previous)

    return before_block

"""Alternative patch-embedding stems, selected by the model config's `vision_stem` key."""
from __future__ import annotations

import math

from torch import nn


class ConvStem(nn.Module):
    """3x3 stride-2 convolutions in place of the patch projection ("early convolutions").

    It produces the same [B, width, H/p, W/p] grid as `conv1`, so the transformer and its
    heads are unchanged; it gives a small ViT trained from scratch the locality bias it
    needs to see shape (shared/notes/attribute-world-prototype.md).
    """

    def __init__(self, width: int, patch_size: int):
        super().__init__()
        steps = int(math.log2(patch_size))
        if 2**steps != patch_size:
            raise ValueError(f"ConvStem needs a power-of-two patch size, got {patch_size}")
        layers: list[nn.Module] = []
        channels = 3
        for i in range(steps):
            out = max(width // 2 ** (steps - 1 - i), 16)
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            channels = out
        layers.append(nn.Conv2d(channels, width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)

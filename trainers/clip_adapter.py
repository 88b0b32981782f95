"""CLIP-Adapter (Gao et al., "CLIP-Adapter: Better Vision-Language Models with Feature
Adapters", arXiv 2110.04544): a bottleneck MLP on CLIP's image feature, blended residually
with it, in front of zero-shot CLIP's frozen hand-written text classifier.

The whole method is this file: docs/EXTENDING.md walks through it as the worked example.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbone import ClipBackbone
from engine.errors import ConfigError
from engine.optim import build_lr_scheduler, build_optimizer
from engine.registry import TRAINER_REGISTRY
from trainers.common import ClipTrainer
from trainers.templates import class_prompts
from trainers.zsclip import ZeroShotClassifier


class FeatureAdapter(nn.Module):
    """Linear(d, d/r) -> ReLU -> Linear(d/r, d) -> ReLU, both without bias, as the official
    adapter; d is the CLIP's embedding width, read from the model."""

    def __init__(self, width: int, reduction: int, dtype: torch.dtype, device: torch.device):
        super().__init__()
        hidden = width // reduction
        if hidden < 1:
            raise ConfigError(
                f"TRAINER.CLIPADAPTER.REDUCTION {reduction} leaves no hidden unit for the embedding width {width}"
            )
        self.down = nn.Linear(width, hidden, bias=False, dtype=dtype, device=device)
        self.up = nn.Linear(hidden, width, bias=False, dtype=dtype, device=device)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.up(F.relu(self.down(x))))


class AdapterCLIP(ZeroShotClassifier):
    """Zero-shot CLIP whose image feature x becomes ratio * adapter(x) + (1 - ratio) * x.

    The classifier is zero-shot CLIP's own (class features encoded once, a buffer), so
    ratio 0 gives zero-shot CLIP's logits exactly and the text tower never runs in training.
    """

    def __init__(self, clip: ClipBackbone, prompts: list[str], reduction: int, ratio: float):
        super().__init__(clip, prompts)
        self.adapter = FeatureAdapter(clip.embed_dim, reduction, clip.dtype, clip.device)
        self.ratio = ratio

    def image_features(self, images: Tensor) -> Tensor:
        x = super().image_features(images)
        return self.ratio * self.adapter(x) + (1 - self.ratio) * x


@TRAINER_REGISTRY.register()
class CLIPAdapter(ClipTrainer):
    """Trains the adapter alone with cross-entropy (ClipTrainer.forward_backward).

    PREC defaults to fp32 because the official code runs CLIP in fp32 (`clip_model.float()`).
    """

    CONFIG_NODE = "CLIPADAPTER"
    CONFIG = {"REDUCTION": 4, "RATIO": 0.2, "PREC": "fp32"}
    SWEEP_CONFIGS = {"base2new": "vit_b16", "xd": "vit_b16", "dg": "vit_b16", "fewshot": "vit_b16", "tiny": "tiny"}

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        c = cfg.TRAINER.CLIPADAPTER
        if not isinstance(c.REDUCTION, int) or c.REDUCTION < 1:
            raise ConfigError(f"TRAINER.CLIPADAPTER.REDUCTION must be a positive integer, got {c.REDUCTION!r}")
        if not 0.0 <= c.RATIO <= 1.0:
            raise ConfigError(f"TRAINER.CLIPADAPTER.RATIO must be in [0, 1], got {c.RATIO!r}")

    def build_model(self) -> None:
        c = self.cfg.TRAINER.CLIPADAPTER
        clip = self.load_backbone()
        prompts = class_prompts(self.cfg.DATASET.NAME, self.dm.dataset.classnames)
        print(f"Prompts: {prompts[:3]}{' ...' if len(prompts) > 3 else ''}")
        self.model = AdapterCLIP(clip, prompts, c.REDUCTION, c.RATIO)
        adapter = self.model.adapter
        print(f"Adapter {clip.embed_dim} -> {adapter.down.out_features} -> {clip.embed_dim}, ratio {c.RATIO}: "
              f"{sum(p.numel() for p in adapter.parameters()):,} learnable parameters")
        self.load_init_weights(adapter)
        optim = build_optimizer(adapter, self.cfg.OPTIM)
        self.register_model("clip_adapter", adapter, optim, build_lr_scheduler(optim, self.cfg.OPTIM))

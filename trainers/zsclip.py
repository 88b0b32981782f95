"""Zero-shot CLIP with CoOp's hand-written per-dataset templates."""
from __future__ import annotations

import torch

from engine.errors import ConfigError
from engine.registry import TRAINER_REGISTRY
from trainers.common import ClipTrainer, TextClassifier
from trainers.templates import class_prompts


class ZeroShotClassifier(TextClassifier):
    frozen_image_tower = True  # CLIP-Adapter's subclass adapts the features after the tower

    def __init__(self, clip, prompts: list[str]):
        super().__init__(clip)
        with torch.no_grad():
            self.register_buffer("class_features", clip.encode_text(clip.tokenize(prompts)))

    def text_features(self) -> torch.Tensor:
        return self.class_features


@TRAINER_REGISTRY.register()
class ZeroshotCLIP(ClipTrainer):
    """Nothing trains; run it with --eval-only, as scripts/zsclip/zeroshot.sh does."""

    SWEEP_CONFIGS = {"base2new": "vit_b16", "xd": "vit_b16", "fewshot": "vit_b16", "tiny": "tiny"}
    TRAINABLE = False

    def build_model(self) -> None:
        clip = self.load_backbone()
        prompts = class_prompts(self.cfg.DATASET.NAME, self.dm.dataset.classnames)
        print(f"Prompts: {prompts[:3]}{' ...' if len(prompts) > 3 else ''}")
        self.model = ZeroShotClassifier(clip, prompts)

    def train(self) -> None:
        raise ConfigError("ZeroshotCLIP has nothing to train: run it with --eval-only")

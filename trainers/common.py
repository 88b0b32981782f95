"""What every CLIP prompt learner shares: backbone loading under the method's PREC,
cross-entropy training, and class text features encoded once per evaluation."""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from backbone import ClipBackbone, load_clip
from backbone.precision import autocast, grad_scaler
from engine.checkpoint import load_checkpoint, load_learnable_state
from engine.errors import ConfigError
from engine.trainer import TrainerX

PRECISIONS = ("fp16", "fp32", "amp")


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (logits.argmax(dim=1) == labels).float().mean().item()


class TextClassifier(nn.Module):
    """CLIP classifier whose class text features do not depend on the image.

    That lets evaluation encode the class prompts once (`cached_text_features`) where
    CoOp's code re-encodes them for every test batch.
    """

    def __init__(self, clip: ClipBackbone):
        super().__init__()
        self.clip = clip
        self._text_cache: torch.Tensor | None = None

    def text_features(self) -> torch.Tensor:
        """[num_classes, embed_dim] class features, not normalised."""
        raise NotImplementedError

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(images.to(self.clip.dtype))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        image = F.normalize(self.image_features(images), dim=-1)
        text = self._text_cache if self._text_cache is not None else F.normalize(self.text_features(), dim=-1)
        return (self.clip.logit_scale.exp() * image @ text.t()).float()

    @contextmanager
    def cached_text_features(self):
        self._text_cache = F.normalize(self.text_features(), dim=-1)
        try:
            yield
        finally:
            self._text_cache = None


class ClipTrainer(TrainerX):
    """Base for CLIP-based trainers; PREC is read from the trainer's config node."""

    DEFAULT_PREC = "fp16"

    @property
    def prec(self) -> str:
        node = self.cfg.TRAINER.get(self.CONFIG_NODE) if self.CONFIG_NODE else None
        return node.PREC if node is not None and "PREC" in node else self.DEFAULT_PREC

    def check_cfg(self, cfg) -> None:
        if self.prec not in PRECISIONS:
            raise ConfigError(f"TRAINER.{self.CONFIG_NODE}.PREC must be one of {PRECISIONS}, got {self.prec!r}")

    def load_backbone(self) -> ClipBackbone:
        name = self.cfg.MODEL.BACKBONE.NAME
        print(f"Loading CLIP (backbone: {name})")
        clip = load_clip(name, pretrained=self.cfg.MODEL.BACKBONE.PRETRAINED, precision=self.prec, device=self.device)
        self.scaler = grad_scaler(self.prec, self.device)
        return clip

    def load_init_weights(self, module: nn.Module) -> None:
        """MODEL.INIT_WEIGHTS: start from a checkpoint's learnable tensors."""
        path = self.cfg.MODEL.INIT_WEIGHTS
        if path:
            load_learnable_state(module, load_checkpoint(path)["state_dict"], path)
            print(f"Initialised learnable weights from {path}")

    def autocast(self):
        return autocast(self.prec, self.device)

    def evaluation_context(self):
        return self.model.cached_text_features()

    def forward_backward(self, batch: dict) -> dict:
        images, labels = self.parse_batch_train(batch)
        with self.autocast():
            logits = self.model(images)
            loss = F.cross_entropy(logits, labels)
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "acc": accuracy(logits, labels)}

"""What every CLIP prompt learner shares: backbone loading under the method's PREC,
cross-entropy training, class text features encoded once per evaluation, and frozen image
features reused across evaluations (TEST.FEATURE_CACHE)."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from backbone import ClipBackbone, load_clip
from backbone.precision import amp_note, autocast, cpu_amp_dtype, grad_scaler
from engine.cache import files_digest
from engine.checkpoint import load_checkpoint, load_learnable_state
from engine.data.samplers import ShardSampler
from engine.errors import ConfigError
from engine.feature_cache import FeatureCache
from engine.progress import progress
from engine.trainer import TrainerX

PRECISIONS = ("fp16", "fp32", "amp")


@dataclass(frozen=True)
class FrozenFeatures:
    """A batch of the frozen CLIP's image features, in place of its images (model_inference)."""

    tensor: torch.Tensor


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (logits.argmax(dim=1) == labels).float().mean().item()


class TextClassifier(nn.Module):
    """CLIP classifier whose class text features do not depend on the image.

    That lets evaluation encode the class prompts once (`cached_text_features`) where
    CoOp's code re-encodes them for every test batch. Its image features are
    `image_head(frozen_image_features(images))`. A model whose image tower is untouched (as in
    CoOp) declares `frozen_image_tower = True`, and evaluation may then reuse the frozen features
    of other runs (engine/feature_cache.py), through `logits_from_frozen`. The declaration covers
    the image path of the class that makes it: a subclass that redefines an image-path method
    (`IMAGE_PATH`) gets computed features unless it declares the flag itself
    (`uses_frozen_features`). `image_head` is the hook for a method that changes the features
    after the frozen tower (CLIP-Adapter). The default is False: a subclass that prompts the
    image tower and forgets to say so is only slower, never wrong.
    """

    frozen_image_tower = False

    def __init__(self, clip: ClipBackbone):
        super().__init__()
        self.clip = clip
        self._text_cache: torch.Tensor | None = None

    def text_features(self) -> torch.Tensor:
        """[num_classes, embed_dim] class features, not normalised."""
        raise NotImplementedError

    def frozen_image_features(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen CLIP's image features [B, embed_dim]."""
        return self.clip.encode_image(images.to(self.clip.dtype))

    def image_head(self, frozen: torch.Tensor) -> torch.Tensor:
        """What the method does to the frozen image features (nothing here; CLIP-Adapter adapts)."""
        return frozen

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_head(self.frozen_image_features(images))

    def logits(self, image_features: torch.Tensor) -> torch.Tensor:
        image = F.normalize(image_features, dim=-1)
        text = self._text_cache if self._text_cache is not None else F.normalize(self.text_features(), dim=-1)
        return (self.clip.logit_scale.exp() * image @ text.t()).float()

    def logits_from_frozen(self, frozen: torch.Tensor) -> torch.Tensor:
        return self.logits(self.image_head(frozen))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(self.image_features(images))

    @contextmanager
    def cached_text_features(self):
        self._text_cache = F.normalize(self.text_features(), dim=-1)
        try:
            yield
        finally:
            self._text_cache = None


# The methods through which a model's logits depend on its images, besides `image_head` (which
# both the cached and the computed path apply): redefining one changes what cached frozen
# features would skip.
IMAGE_PATH = ("forward", "image_features", "frozen_image_features", "logits_from_frozen")


def uses_frozen_features(model: nn.Module | type) -> tuple[bool, str]:
    """(whether evaluation may give `model` (a model or its class) cached frozen CLIP features,
    why not). Decided by where the methods are defined: the nearest class in the MRO that
    declares `frozen_image_tower` vouches for the image path it and its bases define, and a class
    below it that redefines an `IMAGE_PATH` method makes the path its own, uncached, unless it
    declares the flag itself. An inherited True never covers a subclass's own image path."""
    if not getattr(model, "frozen_image_tower", False):
        return False, "the method changes the image tower"
    for cls in (model if isinstance(model, type) else type(model)).__mro__:
        if "frozen_image_tower" in vars(cls):
            break
        redefined = [name for name in IMAGE_PATH if name in vars(cls)]
        if redefined:
            return False, (f"{cls.__qualname__} redefines {', '.join(redefined)} without declaring "
                           "frozen_image_tower itself")
    return True, ""


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
        note = amp_note(self.prec, self.device, self.cfg.TRAINER.CPU_AMP)
        if note:
            print(note)
        return clip

    def load_init_weights(self, module: nn.Module) -> None:
        """MODEL.INIT_WEIGHTS: start from a checkpoint's learnable tensors."""
        path = self.cfg.MODEL.INIT_WEIGHTS
        if path:
            load_learnable_state(module, load_checkpoint(path)["state_dict"], path)
            print(f"Initialised learnable weights from {path}")

    def autocast(self):
        return autocast(self.prec, self.device, self.cfg.TRAINER.CPU_AMP)

    def evaluation_context(self):
        return self.model.cached_text_features()

    # ---- frozen image features, reused across runs -----------------------------------------
    def autocast_dtype(self) -> str:
        if self.prec != "amp":
            return "none"
        if self.device.type == "cuda":
            return str(torch.float16)
        return str(cpu_amp_dtype(self.cfg.TRAINER.CPU_AMP) or "none")

    def feature_cache_key(self, loader) -> tuple[dict | None, str]:
        """(key, "") if this evaluation may reuse cached frozen features, else (None, why not).
        The key holds everything the features depend on (engine/feature_cache.py)."""
        if not self.cfg.TEST.FEATURE_CACHE:
            return None, "TEST.FEATURE_CACHE is off"
        usable, why_not = uses_frozen_features(self.model)
        if not usable:
            return None, why_not
        if self.manifest["weights"].startswith("random-init"):
            return None, "random-init weights (no fingerprint)"
        items = getattr(loader.dataset, "items", None)
        sampler = loader.sampler
        if items is None or not isinstance(sampler, ShardSampler) or (sampler.start, sampler.stop) != (0, len(items)):
            return None, "this process evaluates only part of the list (torchrun)"
        clip = self.model.clip
        impaths = [d.impath for d in loader.dataset.items]
        key = {
            "feature": "ClipBackbone.encode_image", "backbone": self.cfg.MODEL.BACKBONE.NAME,
            "weights": self.manifest["weights"], "images": files_digest(impaths), "n_images": len(impaths),
            "transform": repr(loader.dataset.transform), "weight_dtype": str(clip.dtype),
            "autocast": self.autocast_dtype(), "batch_size": loader.batch_size, "device": self.device.type,
            "torch": str(torch.__version__),
        }
        return key, ""

    def encode_frozen(self, loader) -> torch.Tensor:
        """The frozen image features of every image, batch by batch as an evaluation computes them."""
        features = []
        for batch in progress(loader, "Image features"):
            images, _ = self.parse_batch_test(batch)
            with torch.no_grad(), self.autocast():
                features.append(self.model.frozen_image_features(images))
        return torch.cat(features)

    def evaluation_batches(self, loader) -> Iterator[tuple[object, torch.Tensor]]:
        key, why_not = self.feature_cache_key(loader)
        if key is None:
            print(f"Image features computed (not cached: {why_not})")
            yield from super().evaluation_batches(loader)
            return
        impaths = [d.impath for d in loader.dataset.items]
        cache = FeatureCache()
        features, hit = cache.load_or_compute(key, impaths, lambda: self.encode_frozen(loader))
        print(f"Image features {'reused from' if hit else 'computed and stored in'} {cache.path(key)}")
        labels = torch.tensor([d.label for d in loader.dataset.items])
        features = features.to(self.device)
        for start in range(0, len(impaths), loader.batch_size):
            end = start + loader.batch_size
            yield FrozenFeatures(features[start:end]), labels[start:end].to(self.device)

    def model_inference(self, inputs) -> torch.Tensor:
        if isinstance(inputs, FrozenFeatures):
            return self.model.logits_from_frozen(inputs.tensor)
        return self.model(inputs)

    def forward_backward(self, batch: dict) -> dict:
        images, labels = self.parse_batch_train(batch)
        with self.autocast():
            logits = self.model(images)
            loss = F.cross_entropy(logits, labels)
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "acc": accuracy(logits, labels)}

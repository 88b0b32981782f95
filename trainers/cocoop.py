"""CoCoOp (Zhou et al., CVPR 2022): CoOp's context plus an image-conditioned bias from a
small meta-net, so every image gets its own class prompts (one text pass per image)."""
from __future__ import annotations

import contextlib
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbone import ClipBackbone
from engine.optim import build_lr_scheduler, build_optimizer
from engine.registry import TRAINER_REGISTRY
from trainers.common import ClipTrainer
from trainers.deep_prompts import ClassPrompts, count_learnable


class CoCoOpPrompts(nn.Module):
    """Context vectors and meta-net Linear(E, E/16) -> ReLU -> Linear(E/16, text_width),
    E = embed_dim (the image feature size the meta-net reads). CTX_INIT sets N_CTX to its
    word count, as in CoOp."""

    def __init__(self, clip: ClipBackbone, classnames: list[str], n_ctx: int, ctx_init: str):
        super().__init__()
        if ctx_init:
            n_ctx = len(ctx_init.replace("_", " ").split(" "))
        self.text = ClassPrompts(clip, classnames, n_ctx, ctx_init)
        vis, hidden = clip.embed_dim, clip.embed_dim // 16
        factory = {"dtype": clip.dtype, "device": clip.device}
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis, hidden, **factory)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(hidden, clip.text_width, **factory)),
        ]))

    def forward(self, image_features: Tensor) -> Tensor:
        """[B, text_width] per-image bias added to every context token."""
        return self.meta_net(image_features.to(self.meta_net.linear1.weight.dtype))


class CoCoOpCLIP(nn.Module):
    """The image tower is CLIP's own: its features feed the meta-net, and evaluation may reuse
    them across runs (trainers/common.py's TextClassifier has the same interface)."""

    frozen_image_tower = True

    def __init__(self, clip: ClipBackbone, prompt_learner: CoCoOpPrompts):
        super().__init__()
        self.clip = clip
        self.prompt_learner = prompt_learner

    def frozen_image_features(self, images: Tensor) -> Tensor:
        return self.clip.encode_image(images.to(self.clip.dtype))

    def forward(self, images: Tensor) -> Tensor:
        return self.logits_from_frozen(self.frozen_image_features(images))

    def logits_from_frozen(self, frozen: Tensor) -> Tensor:
        """[B, C] logits; the class prompts of image b are encoded with image b's bias (one
        text pass per image, as the official loop, which bounds memory at test time)."""
        image = F.normalize(frozen, dim=-1)
        bias = self.prompt_learner(image)
        text = self.prompt_learner.text
        scale = self.clip.logit_scale.exp()
        logits = []
        for b in range(image.shape[0]):
            t = F.normalize(self.clip.forward_text(text(bias[b]), text.eot_index).features, dim=-1)
            logits.append(scale * image[b] @ t.t())
        return torch.stack(logits).float()


@TRAINER_REGISTRY.register()
class CoCoOp(ClipTrainer):
    CONFIG_NODE = "COCOOP"
    CONFIG = {"N_CTX": 16, "CTX_INIT": "", "PREC": "fp16"}
    SWEEP_CONFIGS = {"base2new": "vit_b16_c4_ep10_batch1_ctxv1", "xd": "vit_b16_c4_ep10_batch1_ctxv1",
                     "tiny": "tiny_c4_ep5_batch4_ctxv1"}

    def build_model(self) -> None:
        c = self.cfg.TRAINER.COCOOP
        clip = self.load_backbone()
        learner = CoCoOpPrompts(clip, self.dm.dataset.classnames, c.N_CTX, c.CTX_INIT)
        print(f"Learnable parameters: {count_learnable(learner):,}")
        self.load_init_weights(learner)
        self.model = CoCoOpCLIP(clip, learner)
        optim = build_optimizer(learner, self.cfg.OPTIM)
        self.register_model("prompt_learner", learner, optim, build_lr_scheduler(optim, self.cfg.OPTIM))

    def evaluation_context(self):
        """No class-feature cache: CoCoOp's text features depend on the image."""
        return contextlib.nullcontext()

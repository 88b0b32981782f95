"""MaPLe (Khattak et al., CVPR 2023): text prompts coupled to vision prompts by a linear
map per layer, up to PROMPT_DEPTH."""
from __future__ import annotations

import copy
from typing import Sequence

from torch import Tensor, nn

from backbone import ClipBackbone
from engine.optim import build_lr_scheduler, build_optimizer
from engine.registry import TRAINER_REGISTRY
from trainers.common import ClipTrainer
from trainers.deep_prompts import ClassPrompts, DeepPromptCLIP, DeepPrompts, check_depth, count_learnable, normal_prompts


class MultiModalPrompts(DeepPrompts):
    """Layer 0: text ctx and its projection `proj(ctx)` as vision prompts; layers 1..depth-1:
    text prompts and `deep_proj[i-1](text)` as vision prompts.

    As in the official code, the deep projections start as copies of one initialisation.
    """

    def __init__(self, clip: ClipBackbone, classnames: list[str], n_ctx: int, ctx_init: str, depth: int):
        super().__init__()
        check_depth("PROMPT_DEPTH", depth, min(clip.text_layers, clip.vision_layers), minimum=1)
        self.text = ClassPrompts(clip, classnames, n_ctx, ctx_init)
        factory = {"dtype": clip.dtype, "device": clip.device}
        self.proj = nn.Linear(clip.text_width, clip.vision_width, **factory)
        self.text_prompts = normal_prompts(depth - 1, n_ctx, clip.text_width, clip)
        single = nn.Linear(clip.text_width, clip.vision_width, **factory)
        self.deep_proj = nn.ModuleList(copy.deepcopy(single) for _ in range(depth - 1))
        print(f"MaPLe: {n_ctx} coupled prompt tokens per layer, depth {depth}")

    def text_deep(self) -> Sequence[Tensor]:
        return list(self.text_prompts)

    def vision(self) -> Sequence[Tensor]:
        return [self.proj(self.text.ctx)] + [p(t) for p, t in zip(self.deep_proj, self.text_prompts)]


@TRAINER_REGISTRY.register()
class MaPLe(ClipTrainer):
    CONFIG_NODE = "MAPLE"
    CONFIG = {"N_CTX": 2, "CTX_INIT": "a photo of a", "PREC": "fp16", "PROMPT_DEPTH": 9}
    SWEEP_CONFIGS = {"base2new": "vit_b16_c2_ep5_batch4_2ctx", "xd": "vit_b16_c2_ep5_batch4_2ctx_cross_datasets",
                     "tiny": "tiny_c2_ep5_batch4_2ctx"}

    def build_model(self) -> None:
        c = self.cfg.TRAINER.MAPLE
        clip = self.load_backbone()
        learner = MultiModalPrompts(clip, self.dm.dataset.classnames, c.N_CTX, c.CTX_INIT, c.PROMPT_DEPTH)
        print(f"Learnable parameters: {count_learnable(learner):,}")
        self.load_init_weights(learner)
        self.model = DeepPromptCLIP(clip, learner)
        optim = build_optimizer(learner, self.cfg.OPTIM)
        self.register_model("prompt_learner", learner, optim, build_lr_scheduler(optim, self.cfg.OPTIM))

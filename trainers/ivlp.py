"""IVLP (Khattak et al., CVPR 2023 baseline): independent deep prompts in both towers."""
from __future__ import annotations

from engine.optim import build_lr_scheduler, build_optimizer
from engine.registry import TRAINER_REGISTRY
from trainers.common import ClipTrainer
from trainers.deep_prompts import DeepPromptCLIP, IndependentPrompts, count_learnable


def independent_prompts(clip, classnames: list[str], node) -> IndependentPrompts:
    """IndependentPrompts from an IVLP-style config node (IVLP and PromptSRC share the keys)."""
    return IndependentPrompts(
        clip, classnames, node.N_CTX_TEXT, node.N_CTX_VISION,
        node.PROMPT_DEPTH_TEXT, node.PROMPT_DEPTH_VISION, node.CTX_INIT,
    )


@TRAINER_REGISTRY.register()
class IVLP(ClipTrainer):
    CONFIG_NODE = "IVLP"
    CONFIG = {
        "N_CTX_VISION": 2, "N_CTX_TEXT": 2, "CTX_INIT": "a photo of a", "PREC": "fp16",
        "PROMPT_DEPTH_VISION": 9, "PROMPT_DEPTH_TEXT": 9,
    }
    SWEEP_CONFIGS = {"base2new": "vit_b16_c2_ep5_batch4_2+2ctx", "xd": "vit_b16_c2_ep5_batch4_2+2ctx",
                     "tiny": "tiny_c2_ep5_batch4_2+2ctx"}

    def build_model(self) -> None:
        clip = self.load_backbone()
        learner = independent_prompts(clip, self.dm.dataset.classnames, self.cfg.TRAINER[self.CONFIG_NODE])
        print(f"Learnable parameters: {count_learnable(learner):,}")
        self.load_init_weights(learner)
        self.model = DeepPromptCLIP(clip, learner)
        optim = build_optimizer(learner, self.cfg.OPTIM)
        self.register_model("prompt_learner", learner, optim, build_lr_scheduler(optim, self.cfg.OPTIM))

"""CoOp (Zhou et al., IJCV 2022): learnable context vectors in front of the class name."""
from __future__ import annotations

import torch
from torch import nn

from backbone import ClipBackbone
from engine.errors import ConfigError
from engine.optim import build_lr_scheduler, build_optimizer
from engine.registry import TRAINER_REGISTRY
from trainers.common import ClipTrainer, TextClassifier

POSITIONS = ("end", "middle", "front")


def layout_order(n_ctx: int, name_lens: list[int], length: int, position: str) -> torch.Tensor:
    """[C, L] gather indices turning the 'end' layout into `position`'s layout.

    'end' is [SOS, ctx_1..n, class tokens, '.', EOT, pad...]. 'middle' puts the class
    between the two halves of the context (first half n//2 words), 'front' before it;
    both are permutations of the same tokens, so one gather builds every class at once.
    """
    rows = []
    for name_len in name_lens:
        ctx = list(range(1, 1 + n_ctx))
        cls = list(range(1 + n_ctx, 1 + n_ctx + name_len))
        rest = list(range(1 + n_ctx + name_len, length))
        if position == "end":
            body = ctx + cls
        elif position == "middle":
            half = n_ctx // 2
            body = ctx[:half] + cls + ctx[half:]
        else:
            body = cls + ctx
        rows.append([0] + body + rest)
    return torch.tensor(rows, dtype=torch.long)


class PromptLearner(nn.Module):
    """Context vectors (generic or class-specific) spliced between frozen token embeddings.

    With CTX_INIT the context is one generic context initialised from those words, whatever CSC
    says, as in the official CoOp (its CSC branch is the random initialisation's only).
    """

    def __init__(self, clip: ClipBackbone, classnames: list[str], n_ctx: int, ctx_init: str, csc: bool, position: str):
        super().__init__()
        classnames = [name.replace("_", " ") for name in classnames]
        n_cls = len(classnames)
        if ctx_init:
            if csc:
                print("CSC is ignored with CTX_INIT, as in the official CoOp: one context for every class")
                csc = False
            ctx_init = ctx_init.replace("_", " ")
            n_ctx = len(ctx_init.split(" "))
            with torch.no_grad():
                init = clip.embed_tokens(clip.tokenize([ctx_init]))[0, 1:1 + n_ctx]
            ctx = init.clone()
            prompt_prefix = ctx_init
        else:
            shape = (n_cls, n_ctx, clip.text_width) if csc else (n_ctx, clip.text_width)
            ctx = torch.empty(shape, dtype=clip.dtype, device=clip.device)
            nn.init.normal_(ctx, std=0.02)
            prompt_prefix = " ".join(["X"] * n_ctx)
        print(f"Initializing {'class-specific' if csc else 'a generic'} context")
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx)
        self.n_cls, self.n_ctx, self.position = n_cls, n_ctx, position

        ids = clip.tokenize([f"{prompt_prefix} {name}." for name in classnames])
        with torch.no_grad():
            embedding = clip.embed_tokens(ids)
        self.register_buffer("token_prefix", embedding[:, :1], persistent=False)
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx:], persistent=False)
        self.register_buffer("eot_index", clip.eot_index(ids), persistent=False)
        name_lens = [len(clip.tokenizer.encode(name)) for name in classnames]
        order = layout_order(n_ctx, name_lens, ids.shape[1], position)
        self.register_buffer("order", order.to(embedding.device), persistent=False)

    def forward(self) -> torch.Tensor:
        """[C, L, width] prompt embeddings."""
        ctx = self.ctx if self.ctx.dim() == 3 else self.ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        prompts = torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)
        if self.position == "end":
            return prompts
        return prompts.gather(1, self.order.unsqueeze(-1).expand(-1, -1, prompts.shape[-1]))


class CoOpCLIP(TextClassifier):
    frozen_image_tower = True  # the prompts are in the text tower only

    def __init__(self, clip: ClipBackbone, prompt_learner: PromptLearner):
        super().__init__(clip)
        self.prompt_learner = prompt_learner

    def text_features(self) -> torch.Tensor:
        return self.clip.forward_text(self.prompt_learner(), self.prompt_learner.eot_index).features


@TRAINER_REGISTRY.register()
class CoOp(ClipTrainer):
    CONFIG_NODE = "COOP"
    CONFIG = {"N_CTX": 16, "CSC": False, "CTX_INIT": "", "PREC": "fp16", "CLASS_TOKEN_POSITION": "end"}
    # base2new: scripts/coop/base2new_*.sh. xd and fewshot: scripts/coop/eval.sh and main.sh take
    # the config as an argument; these are CoOp's choices (16 context tokens, no init): 50 epochs on
    # ImageNet, and elsewhere 50 epochs for 1 shot, 100 for 2 and 4, 200 for 8 and 16.
    SWEEP_CONFIGS = {"base2new": "vit_b16_ep50_ctxv1", "xd": "vit_b16_ep50", "fewshot": "vit_b16",
                     "fewshot:imagenet": "vit_b16_ep50", "fewshot:1shot": "vit_b16_ep50",
                     "fewshot:2shot": "vit_b16_ep100", "fewshot:4shot": "vit_b16_ep100", "tiny": "tiny_ep10"}

    def check_cfg(self, cfg) -> None:
        super().check_cfg(cfg)
        if cfg.TRAINER.COOP.CLASS_TOKEN_POSITION not in POSITIONS:
            raise ConfigError(
                f"TRAINER.COOP.CLASS_TOKEN_POSITION must be one of {POSITIONS}, "
                f"got {cfg.TRAINER.COOP.CLASS_TOKEN_POSITION!r}"
            )

    def build_model(self) -> None:
        c = self.cfg.TRAINER.COOP
        clip = self.load_backbone()
        learner = PromptLearner(clip, self.dm.dataset.classnames, c.N_CTX, c.CTX_INIT, c.CSC, c.CLASS_TOKEN_POSITION)
        self.load_init_weights(learner)
        self.model = CoOpCLIP(clip, learner)
        optim = build_optimizer(learner, self.cfg.OPTIM)
        self.register_model("prompt_learner", learner, optim, build_lr_scheduler(optim, self.cfg.OPTIM))

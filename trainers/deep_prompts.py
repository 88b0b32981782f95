"""What IVLP, MaPLe and PromptSRC share: the class-prompt text layout, per-layer prompt
tensors, and the TowerHooks that put them into the frozen towers (see backbone.hooks).

Layer convention (the official code's): the layer-0 prompts enter with the tower input
(text: positions 1..n of the prompt embeddings; vision: appended after the patch tokens,
before ln_pre); a prompt list of depth d then replaces those same positions before blocks
1..d-1 and leaves every later block alone.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from backbone import ClipBackbone, TowerHooks, append_tokens, replace_tokens
from engine.errors import ConfigError
from trainers.common import TextClassifier


def init_phrase(clip: ClipBackbone, n_ctx: int, ctx_init: str) -> tuple[str, Tensor | None]:
    """(prompt prefix, initial ctx [n_ctx, text_width] or None for a random init).

    The official rule: CTX_INIT initialises the context when it has at least N_CTX tokens.
    The learned tokens then replace its first N_CTX tokens and the rest of the phrase stays
    in the prompt ("a photo of a" with N_CTX 2 -> [SOS, ctx1, ctx2, of, a, <class>, ., EOT]).
    Otherwise the prefix is N_CTX "X" placeholders. (The official code tests N_CTX <= 4,
    which equals this for its "a photo of a" and would splice EOT/padding into the
    context for shorter phrases.)
    """
    phrase = ctx_init.replace("_", " ").strip()
    if phrase and n_ctx <= len(clip.tokenizer.encode(phrase)):
        with torch.no_grad():
            ctx = clip.embed_tokens(clip.tokenize([phrase]))[0, 1:1 + n_ctx].clone()
        return phrase, ctx
    return " ".join(["X"] * n_ctx), None


def normal_prompts(count: int, n: int, width: int, clip: ClipBackbone) -> nn.ParameterList:
    """`count` learnable [n, width] prompts, N(0, 0.02) as in VPT/MaPLe, in CLIP's dtype."""
    params = nn.ParameterList()
    for _ in range(count):
        t = torch.empty(n, width, dtype=clip.dtype, device=clip.device)
        nn.init.normal_(t, std=0.02)
        params.append(nn.Parameter(t))
    return params


class ClassPrompts(nn.Module):
    """Layer-0 text prompts: [SOS, ctx_1..n, rest of CTX_INIT, class tokens, '.', EOT, pad]."""

    def __init__(self, clip: ClipBackbone, classnames: list[str], n_ctx: int, ctx_init: str):
        super().__init__()
        if n_ctx < 1:
            raise ConfigError(f"The text prompt needs at least one context token, got N_CTX {n_ctx}")
        prefix, ctx = init_phrase(clip, n_ctx, ctx_init)
        if ctx is None:
            ctx = normal_prompts(1, n_ctx, clip.text_width, clip)[0].data
        print(f'Initial text context: "{prefix}" ({n_ctx} learnable tokens)')
        self.ctx = nn.Parameter(ctx.to(clip.dtype))
        self.n_cls, self.n_ctx, self.prompt_prefix = len(classnames), n_ctx, prefix
        self.texts = [f"{prefix} {name.replace('_', ' ')}." for name in classnames]
        ids = clip.tokenize(self.texts)
        with torch.no_grad():
            embedding = clip.embed_tokens(ids)
        self.register_buffer("token_prefix", embedding[:, :1], persistent=False)
        self.register_buffer("token_suffix", embedding[:, 1 + n_ctx:], persistent=False)
        self.register_buffer("eot_index", clip.eot_index(ids), persistent=False)

    def forward(self, shift: Tensor | None = None) -> Tensor:
        """[C, L, width] prompt embeddings; `shift` [text_width] is added to every ctx token
        (CoCoOp's image-conditioned bias)."""
        ctx = self.ctx if shift is None else self.ctx + shift
        ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1).to(self.token_prefix.dtype)
        return torch.cat([self.token_prefix, ctx, self.token_suffix], dim=1)


def text_hooks(deep: Sequence[Tensor]) -> TowerHooks:
    """Before block i in 1..len(deep): positions 1..n <- deep[i-1]."""
    if not deep:
        return TowerHooks()

    def before_block(i: int, x: Tensor) -> Tensor:
        return replace_tokens(x, 1, deep[i - 1]) if 1 <= i <= len(deep) else x

    return TowerHooks(before_block=before_block)


def vision_hooks(prompts: Sequence[Tensor]) -> TowerHooks:
    """prompts[0] appended after the patch tokens; before block i in 1..len-1 the last n
    tokens <- prompts[i]. No prompts: the plain tower."""
    if not prompts:
        return TowerHooks()
    n = prompts[0].shape[0]

    def before_block(i: int, x: Tensor) -> Tensor:
        return replace_tokens(x, -n, prompts[i]) if 1 <= i < len(prompts) else x

    return TowerHooks(on_embed=lambda x: append_tokens(x, prompts[0]), before_block=before_block)


def check_depth(name: str, depth: int, layers: int, minimum: int = 0) -> None:
    if not minimum <= depth <= layers:
        raise ConfigError(f"{name} must be in {minimum}..{layers} (the tower's layers), got {depth}")


class DeepPrompts(nn.Module):
    """Interface of a deep prompt learner: layer-0 text prompts plus per-layer prompts."""

    text: ClassPrompts

    def text_deep(self) -> Sequence[Tensor]:
        """Text prompts for layers 1..depth-1."""
        raise NotImplementedError

    def vision(self) -> Sequence[Tensor]:
        """Vision prompts for layers 0..depth-1 (empty: no vision prompts)."""
        raise NotImplementedError


class IndependentPrompts(DeepPrompts):
    """IVLP/PromptSRC: text and vision prompts learned independently, per layer."""

    def __init__(self, clip: ClipBackbone, classnames: list[str], n_ctx_text: int, n_ctx_vision: int,
                 depth_text: int, depth_vision: int, ctx_init: str):
        super().__init__()
        check_depth("PROMPT_DEPTH_TEXT", depth_text, clip.text_layers, minimum=1)
        check_depth("PROMPT_DEPTH_VISION", depth_vision, clip.vision_layers)
        if depth_vision and n_ctx_vision < 1:
            raise ConfigError(f"PROMPT_DEPTH_VISION {depth_vision} needs N_CTX_VISION >= 1")
        self.text = ClassPrompts(clip, classnames, n_ctx_text, ctx_init)
        self.text_prompts = normal_prompts(depth_text - 1, n_ctx_text, clip.text_width, clip)
        self.vision_prompts = normal_prompts(depth_vision, n_ctx_vision, clip.vision_width, clip)
        print(f"Independent V-L prompts: text {n_ctx_text} x depth {depth_text}, "
              f"vision {n_ctx_vision} x depth {depth_vision}")

    def text_deep(self) -> Sequence[Tensor]:
        return list(self.text_prompts)

    def vision(self) -> Sequence[Tensor]:
        return list(self.vision_prompts)


class DeepPromptCLIP(TextClassifier):
    """CLIP with deep prompts in both towers; text features are image-independent, so an
    evaluation encodes the class prompts once. The image tower is prompted: no frozen features."""

    def __init__(self, clip: ClipBackbone, prompt_learner: DeepPrompts):
        super().__init__(clip)
        self.prompt_learner = prompt_learner

    def text_features(self) -> Tensor:
        learner = self.prompt_learner
        return self.clip.forward_text(learner.text(), learner.text.eot_index, text_hooks(learner.text_deep())).features

    def image_features(self, images: Tensor) -> Tensor:
        return self.clip.forward_image(images.to(self.clip.dtype), vision_hooks(self.prompt_learner.vision())).features


def count_learnable(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

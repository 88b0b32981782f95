"""The DeAR model around a frozen ClipBackbone: attribute and text tokens, role masks, one
logit set per path (CLS + one per attribute token) and their learned fusion."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbone import ClipBackbone, TowerHooks
from trainers.representation import FrozenTextPrefix, RepresentationSpace, logit_scale, residual_factors, token_hook

FUSIONS = ("learned", "cls", "mmrl")


@dataclass(frozen=True)
class DeARSettings:
    """Model switches (TRAINER.DEAR.*); layer indices here are 0-based."""

    attributes: tuple[str, ...]
    first_layer: int
    text_first_layer: int
    rep_dim: int
    attr_tokens: bool = True
    n_text: int = 5
    beta: float = 0.9
    rank: int = 4
    attr_proj_rank: int = 0
    fusion: str = "learned"
    fusion_cls_init: float = 0.7
    logit_scale: float = 0.0  # the logits' scale; 0: the checkpoint's logit_scale.exp()

    @property
    def n_attr(self) -> int:
        return len(self.attributes) if self.attr_tokens else 0

    @property
    def paths(self) -> int:
        """Logit sets fused: CLS plus one per attribute token (CLS alone for FUSION cls)."""
        return 1 + (self.n_attr if self.fusion != "cls" else 0)


@dataclass
class DeAROutput:
    path_logits: Tensor  # [B, paths, C], path 0 = CLS
    logits: Tensor  # [B, C] what the loss sees: fused, or CLS for FUSION cls
    cls_features: Tensor  # [B, embed_dim], not normalised
    text_features: Tensor  # [C, embed_dim], not normalised


class DeARCLIP(nn.Module):
    """Learnable: the shared latent and its aligners, the attribute projection, the fusion
    weights. Nothing learnable depends on the class set, so weights trained on base classes
    load for new classes."""

    def __init__(self, clip: ClipBackbone, prompts: list[str], settings: DeARSettings, masks: Tensor | None):
        super().__init__()
        s = settings
        if s.fusion not in FUSIONS:
            raise ValueError(f"TRAINER.DEAR.FUSION must be one of {FUSIONS}, got {s.fusion!r}")
        self.clip, self.settings = clip, s
        self.n_orig = 1 + clip.num_patches
        self.tokens = RepresentationSpace(
            s.n_attr, s.n_text, s.rep_dim, clip.vision_width, clip.text_width,
            clip.vision_layers - s.first_layer, clip.text_layers - s.text_first_layer, s.rank,
        )
        if s.paths > 1:
            self._init_attr_projection(clip, s.attr_proj_rank)
            rest = (1 - s.fusion_cls_init) / s.n_attr
            init = torch.tensor([s.fusion_cls_init] + [rest] * s.n_attr).log()
            self.fusion_weights = nn.Parameter(init)
        if masks is not None and not 0 < masks.shape[0] <= clip.vision_layers - s.first_layer:
            raise ValueError(f"{masks.shape[0]} layer masks for {clip.vision_layers - s.first_layer} deep layers")
        self.register_buffer("masks", masks, persistent=False)
        ids = clip.tokenize(prompts)
        with torch.no_grad():
            self.register_buffer("prompt_embeddings", clip.embed_tokens(ids), persistent=False)
            self.register_buffer("frozen_text", clip.encode_text(ids), persistent=False)
        self.register_buffer("eot_index", clip.eot_index(ids), persistent=False)
        self.eval_fused = s.paths > 1
        self._text_cache: Tensor | None = None
        self.text_prefix = FrozenTextPrefix(clip, s.text_first_layer)
        self.to(clip.device)  # the learnable tensors are drawn on the CPU; the backbone may be on a GPU

    def _init_attr_projection(self, clip: ClipBackbone, rank: int) -> None:
        """Full learnable copy of CLIP's projection, or (rank > 0, MMRL++-style) the frozen
        projection plus a learnable low-rank residual starting at zero."""
        proj = clip.image_projection.detach().float()
        if rank == 0:
            self.attr_proj = nn.Parameter(proj.clone())
            return
        self.register_buffer("attr_proj_base", proj.clone(), persistent=False)
        down, up = residual_factors(proj.shape[0], proj.shape[1], rank)
        self.attr_proj_down = nn.Parameter(down)
        self.attr_proj_up = nn.Parameter(up)

    def attr_projection(self) -> Tensor:
        if hasattr(self, "attr_proj"):
            return self.attr_proj
        return self.attr_proj_base + self.attr_proj_down @ self.attr_proj_up

    # ---- towers ------------------------------------------------------------------------
    def vision_hooks(self) -> TowerHooks:
        tokens = self.tokens.vision()
        if tokens is None:
            return TowerHooks()
        s = self.settings
        first_masked = self.clip.vision_layers - (0 if self.masks is None else len(self.masks))  # masks cover the last layers
        masks = {} if self.masks is None else {first_masked + i: m for i, m in enumerate(self.masks)}
        layers = range(s.first_layer, s.first_layer + tokens.shape[0])
        return TowerHooks(before_block=token_hook(tokens, layers, self.n_orig, s.beta), head_masks=masks)

    def text_features(self, share_prefix: bool = True) -> Tensor:
        """[C, embed_dim] class features with the text tokens after the start token; with
        `share_prefix`, from the frozen states below the text tokens' layer, computed once (the
        same numbers)."""
        tokens = self.tokens.text()
        if tokens is None:
            return self.clip.forward_text(self.prompt_embeddings, self.eot_index).features
        s = self.settings
        hooks = TowerHooks(
            before_block=token_hook(tokens, range(s.text_first_layer, s.text_first_layer + tokens.shape[0]), 1, s.beta),
            eot_shift=s.n_text,
        )
        if not share_prefix:
            return self.clip.forward_text(self.prompt_embeddings, self.eot_index, hooks).features
        states = self.text_prefix(self.prompt_embeddings, self.eot_index)
        return self.clip.forward_text(states, self.eot_index, hooks, start_layer=s.text_first_layer).features

    def image_prefix(self, images: Tensor) -> Tensor:
        """The frozen image states entering layer J: the same for the prompted pass and frozen
        CLIP's (the regulariser's f_cls^CLIP), so a training step computes them once."""
        with torch.no_grad():
            return self.clip.image_states(images.to(self.clip.dtype), self.settings.first_layer)

    @torch.no_grad()
    def frozen_image_features(self, images: Tensor, prefix: Tensor | None = None) -> Tensor:
        """Frozen CLIP's image features of `images` (from `image_prefix(images)` when given)."""
        if prefix is None:
            return self.clip.encode_image(images.to(self.clip.dtype))
        return self.clip.forward_image(prefix, start_layer=self.settings.first_layer).features

    def image_features(self, images: Tensor, prefix: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """CLS features [B, D] through the frozen projection and, when fused, the attribute
        features [B, A, D] = ln_post(attribute token) @ the learnable projection; from
        `image_prefix(images)` when given."""
        if prefix is None:
            out = self.clip.forward_image(images.to(self.clip.dtype), self.vision_hooks())
        else:
            out = self.clip.forward_image(prefix, self.vision_hooks(), start_layer=self.settings.first_layer)
        if self.settings.paths == 1:
            return out.features, None
        attr = self.clip.image_norm(out.tokens[:, self.n_orig:self.n_orig + self.settings.n_attr])
        return out.features, attr @ self.attr_projection().to(attr.dtype)

    # ---- logits ------------------------------------------------------------------------
    def fusion_alpha(self) -> Tensor:
        """α = softmax(w) over the paths, CLS first ([1.] without attribute paths)."""
        if self.settings.paths == 1:
            return torch.ones(1, device=self.prompt_embeddings.device)
        return self.fusion_weights.softmax(0)

    def path_logits(self, cls: Tensor, attr: Tensor | None, text: Tensor) -> Tensor:
        image = cls[:, None] if attr is None else torch.cat([cls[:, None], attr], dim=1)
        image = F.normalize(image.float(), dim=-1)
        return logit_scale(self.clip, self.settings.logit_scale) * image @ F.normalize(text.float(), dim=-1).t()

    def forward_train(self, images: Tensor, prefix: Tensor | None = None, share_prefix: bool = True) -> DeAROutput:
        """Training outputs; `prefix`: the images' frozen states below J (`image_prefix`),
        `share_prefix`: the text side's, computed once."""
        text = self.text_features(share_prefix)
        cls, attr = self.image_features(images, prefix)
        paths = self.path_logits(cls, attr, text)
        logits = (self.fusion_alpha()[None, :, None] * paths).sum(1)
        return DeAROutput(paths, logits, cls, text)

    def forward(self, images: Tensor) -> Tensor:
        """Evaluation logits: fused, or the CLS path alone when `eval_fused` is off."""
        text = self._text_cache if self._text_cache is not None else self.text_features()
        cls, attr = self.image_features(images)
        paths = self.path_logits(cls, attr if self.eval_fused else None, text)
        if not self.eval_fused:
            return paths[:, 0]
        return (self.fusion_alpha()[None, :, None] * paths).sum(1)

    @contextmanager
    def cached_text_features(self) -> Iterator[None]:
        self._text_cache = self.text_features()
        try:
            yield
        finally:
            self._text_cache = None

"""ClipBackbone: one frozen open_clip CLIP with both towers opened up for prompt learning.

Every method (CoOp, CoCoOp, MaPLe, IVLP, PromptSRC, DeAR) talks to CLIP through this class
and TowerHooks; none of them touches open_clip's modules directly.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from open_clip.model import CLIP
from open_clip.transformer import VisionTransformer
from torch import Tensor, nn

from backbone.blocks import check_layers, run_blocks
from backbone.hooks import TowerHooks, TowerOutput
from engine.errors import BackboneError

_NO_HOOKS = TowerHooks()
Tokenizer = Callable[..., Tensor]


class ClipBackbone(nn.Module):
    """A frozen CLIP. Sizes are read from the model; `forward_*` take TowerHooks.

    It stays in eval mode even when a trainer calls `.train()` on a module holding it: the
    weights are frozen, and ResNet towers/conv stems would otherwise update BatchNorm stats.
    """

    def __init__(self, model: CLIP, tokenizer: Tokenizer | None, name: str = ""):
        super().__init__()
        if not isinstance(model, CLIP):
            raise BackboneError(
                f"ClipBackbone needs an open_clip CLIP with the built-in text transformer, got {type(model).__name__}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.train(False)

    def train(self, mode: bool = True) -> "ClipBackbone":
        return super().train(False)

    # ---- sizes -------------------------------------------------------------------------
    @property
    def is_vit(self) -> bool:
        return isinstance(self.model.visual, VisionTransformer)

    @property
    def vision_width(self) -> int:
        visual = self.model.visual
        return visual.transformer.width if self.is_vit else visual.attnpool.k_proj.in_features

    @property
    def vision_layers(self) -> int:
        """Transformer blocks (ViT) or residual blocks over the four stages (ResNet)."""
        visual = self.model.visual
        if self.is_vit:
            return len(visual.transformer.resblocks)
        return sum(len(stage) for stage in (visual.layer1, visual.layer2, visual.layer3, visual.layer4))

    @property
    def vision_heads(self) -> int:
        visual = self.model.visual
        return visual.transformer.resblocks[0].attn.num_heads if self.is_vit else visual.attnpool.num_heads

    @property
    def num_patches(self) -> int:
        """Patch tokens of a ViT (grid**2); they follow the class token in every layer."""
        grid = self._vit().grid_size
        return grid[0] * grid[1]

    @property
    def text_width(self) -> int:
        return self.model.transformer.width

    @property
    def text_layers(self) -> int:
        return len(self.model.transformer.resblocks)

    @property
    def text_heads(self) -> int:
        return self.model.transformer.resblocks[0].attn.num_heads

    @property
    def embed_dim(self) -> int:
        proj = self.model.text_projection
        return proj.out_features if isinstance(proj, nn.Linear) else proj.shape[1]

    @property
    def context_length(self) -> int:
        return self.model.positional_embedding.shape[0]

    @property
    def image_size(self) -> int:
        """Input height = width in pixels (CLIP towers take square images)."""
        size = self.model.visual.image_size
        return size[0] if isinstance(size, (tuple, list)) else size

    @property
    def dtype(self) -> torch.dtype:
        """The dtype inputs are cast to: that of the transformer weights (CoOp's clip.dtype)."""
        return self.model.transformer.get_cast_dtype()

    @property
    def device(self) -> torch.device:
        return self.model.positional_embedding.device

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.model.logit_scale

    # ---- text --------------------------------------------------------------------------
    def tokenize(self, texts: str | Sequence[str]) -> Tensor:
        """LongTensor [N, context_length] on the backbone's device."""
        return self.tokenizer(texts).to(self.device)

    def eot_index(self, ids: Tensor) -> Tensor:
        """Position of each sequence's end-of-text token, [N] (argmax for the OpenAI vocab,
        whose EOT id is the largest, as CoOp pools)."""
        pool = self.model.text_pool_type
        if pool == "argmax":
            return ids.argmax(dim=-1)
        if pool == "eos":
            return (ids == self.model.text_eos_id).int().argmax(dim=-1)
        raise ValueError(f"Text pooling {pool!r} has no end-of-text position; supported: 'argmax', 'eos'")

    def embed_tokens(self, ids: Tensor) -> Tensor:
        """Token embeddings [N, L, text_width] in `self.dtype`, without positions."""
        return self.model.token_embedding(ids.to(self.device)).to(self.dtype)

    def text_head(self, tokens: Tensor) -> Tensor:
        """ln_final then text_projection, for pooled or any extra text tokens [..., text_width]."""
        x = self.model.ln_final(tokens)
        proj = self.model.text_projection
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj

    def _text_input(self, embeddings: Tensor, eot_index: Tensor, truncate: bool) -> Tensor:
        length = int(eot_index.max()) + 1 if truncate else embeddings.shape[1]
        return embeddings[:, :length].to(self.dtype) + self.model.positional_embedding[:length].to(self.dtype)

    def forward_text(
        self, embeddings: Tensor, eot_index: Tensor, hooks: TowerHooks | None = None, *, truncate: bool = True,
        start_layer: int | None = None,
    ) -> TowerOutput:
        """Text tower on token(+prompt) embeddings [N, L, text_width], pooled at
        `eot_index + hooks.eot_shift`.

        With `truncate`, positions after the last end-of-text token are dropped first: under
        the causal mask no kept token attends to them, so the features are unchanged while
        the work shrinks from context_length to the longest prompt. `tokens` then has the
        truncated length (plus whatever hooks insert).

        With `start_layer` k (0 included), `embeddings` are instead the states entering block k, as
        `text_states(..., k)` returns them (truncated, positions added), and only blocks k.. run.
        """
        hooks = hooks or _NO_HOOKS
        check_layers(hooks, self.text_layers, "text")
        eot_index = eot_index.to(self.device)
        if start_layer is not None:
            if hooks.on_embed is not None:
                raise ValueError("on_embed acts on the tower input; it cannot apply to states entering a block")
            x = embeddings
        else:
            x = self._text_input(embeddings, eot_index, truncate)
            if hooks.on_embed is not None:
                x = hooks.on_embed(x)
        x, head_outputs = run_blocks(self.model.transformer, x, hooks, causal=True, start=start_layer or 0)
        pooled = x[torch.arange(x.shape[0], device=x.device), eot_index + hooks.eot_shift]
        return TowerOutput(self.text_head(pooled), x, head_outputs)

    def text_states(self, embeddings: Tensor, eot_index: Tensor, layer: int) -> Tensor:
        """The states entering text block `layer` ([N, L', text_width], truncated after the last
        end-of-text token) of embeddings without hooks: a prefix that methods whose tokens enter
        at `layer` can compute once and continue with forward_text(..., start_layer=layer)."""
        x = self._text_input(embeddings, eot_index.to(self.device), truncate=True)
        return run_blocks(self.model.transformer, x, _NO_HOOKS, causal=True, stop=layer)[0]

    def encode_text(self, ids: Tensor, hooks: TowerHooks | None = None) -> Tensor:
        """Text features [N, embed_dim] of token ids [N, context_length]."""
        return self.forward_text(self.embed_tokens(ids), self.eot_index(ids), hooks).features

    # ---- image -------------------------------------------------------------------------
    def _vit(self) -> VisionTransformer:
        visual = self.model.visual
        if not self.is_vit:
            raise BackboneError(
                f"{type(visual).__name__} image towers support encode_image without hooks only; "
                "token access and hooks need a ViT backbone (e.g. ViT-B/16)"
            )
        if visual.attn_pool is not None or visual.pool_type != "tok":
            raise BackboneError("ClipBackbone's ViT path needs class-token pooling without an attentional pooler")
        return visual

    def _patch_embeddings(self, images: Tensor) -> Tensor:
        visual = self._vit()
        x = visual.conv1(images.to(device=self.device, dtype=self.dtype))
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
        return visual.patch_dropout(x)

    def embed_image(self, images: Tensor) -> Tensor:
        """Input tokens of the vision transformer, [B, 1 + grid**2, vision_width]:
        conv1 (or stem) patches, class token, positional embedding, ln_pre."""
        return self._vit().ln_pre(self._patch_embeddings(images))

    def image_head(self, tokens: Tensor) -> Tensor:
        """ln_post then proj, for the class token or any extra vision tokens [..., vision_width]."""
        visual = self._vit()
        return visual.ln_post(tokens) @ visual.proj

    def image_norm(self, tokens: Tensor) -> Tensor:
        """ln_post alone, for extra vision tokens that a method projects with its own matrix."""
        return self._vit().ln_post(tokens)

    @property
    def image_projection(self) -> Tensor:
        """The frozen vision projection [vision_width, embed_dim] (e.g. to initialise a copy)."""
        return self._vit().proj

    def image_head_direct(self, parts: Tensor, final: Tensor) -> Tensor:
        """Direct contributions of residual-stream parts to the image features.

        parts [B, ..., vision_width] are summands of the final class-token state final
        [B, vision_width] (e.g. per-head outputs at the class token). ln_post is linear once
        its scale is fixed to that of `final`, so each part maps to
        (centre(part) * gamma / std(final)) @ proj, and parts that sum to `final` give
        contributions that sum to image_head(final) - beta @ proj (TextSpan's decomposition).
        """
        visual = self._vit()
        norm = visual.ln_post
        scale = (final.float().var(-1, unbiased=False) + norm.eps).rsqrt()
        scale = scale.view(final.shape[0], *([1] * (parts.dim() - 2)), 1)
        centred = parts.float() - parts.float().mean(-1, keepdim=True)
        return (centred * scale * norm.weight.float()) @ visual.proj.float()

    def forward_image(self, images: Tensor, hooks: TowerHooks | None = None, *,
                      start_layer: int | None = None) -> TowerOutput:
        """ViT tower on images [B, 3, image_size, image_size]; features = image_head(CLS).

        With `start_layer` k (0 included), `images` are instead the states entering block k, as
        `image_states(..., k)` returns them, and only blocks k.. run: hooks may then act on block
        k and later only (head masks or captures before it are an error; `before_block` is called
        for blocks k..).
        """
        hooks = hooks or _NO_HOOKS
        visual = self._vit()
        check_layers(hooks, self.vision_layers, "vision")
        if start_layer is not None:
            early = sorted(i for i in [*hooks.head_masks, *hooks.capture_heads] if i < start_layer)
            if early or hooks.on_embed is not None:
                raise ValueError(f"forward_image(start_layer={start_layer}): hooks act before block {start_layer} "
                                 f"(layers {early} or on_embed); start earlier")
            x = images
        else:
            x = self._patch_embeddings(images)
            if hooks.on_embed is not None:
                x = hooks.on_embed(x)
            x = visual.ln_pre(x)
        x, head_outputs = run_blocks(visual.transformer, x, hooks, causal=False, start=start_layer or 0)
        return TowerOutput(self.image_head(x[:, 0]), x, head_outputs)

    def image_states(self, images: Tensor, layer: int) -> Tensor:
        """The states entering vision block `layer` [B, L, width] of images without hooks: a prefix
        that a prompted pass and a frozen pass whose hooks start at `layer` can share, each going on
        with forward_image(..., start_layer=layer)."""
        if not 0 <= layer <= self.vision_layers:
            raise ValueError(f"image_states: layer {layer} is outside 0..{self.vision_layers}")
        return run_blocks(self._vit().transformer, self.embed_image(images), _NO_HOOKS, causal=False, stop=layer)[0]

    def encode_image(self, images: Tensor, hooks: TowerHooks | None = None) -> Tensor:
        """Image features [B, embed_dim]; ResNet towers run open_clip's forward (no hooks)."""
        if not self.is_vit and not (hooks and hooks.active):
            return self.model.visual(images.to(device=self.device, dtype=self.dtype))
        return self.forward_image(images, hooks).features

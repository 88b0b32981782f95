"""OpenAI's CLIP module interface over an open_clip CLIP, for trainer files written against
OpenAI's `clip` package (external/openai_clip.py builds models through `openai_view`).

open_clip keeps OpenAI's module names, so its state dicts are OpenAI's key for key, but it runs
its transformers batch-first and passes the causal mask in at every call. Trainer files call
`clip_model.transformer(x)` with sequence-first input and no mask, call the blocks of
`transformer.resblocks` one by one, and read `visual.input_resolution` and `clip_model.dtype`.
`openai_view` gives a model those conventions in place: its transformers, their blocks, the
vision tower and the model itself become subclasses that change only how they are called.
Weights and arithmetic stay open_clip's, so features equal ClipBackbone's on the same weights.
"""
from __future__ import annotations

import torch
from open_clip.model import CLIP
from open_clip.transformer import ResidualAttentionBlock, Transformer, VisionTransformer
from torch import Tensor

from backbone.blocks import causal_mask


class SequenceFirstBlock(ResidualAttentionBlock):
    """open_clip's block called as OpenAI's: x [L, N, D] and the block's own `attn_mask`
    (causal in the text tower), unless a mask is passed."""

    attn_mask: Tensor | None = None

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        mask = self.attn_mask if attn_mask is None else attn_mask
        if mask is not None:
            mask = mask[: x.shape[0], : x.shape[0]].to(dtype=x.dtype, device=x.device)
        if self.attn.batch_first:
            return super().forward(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)
        return super().forward(x, attn_mask=mask)


class SequenceFirstTransformer(Transformer):
    """open_clip's Transformer called as OpenAI's: x [L, N, D] through every block."""

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:  # type: ignore[override]
        for block in self.resblocks:
            x = block(x, attn_mask=attn_mask)
        return x


class OpenAIVisionTransformer(VisionTransformer):
    """open_clip's ViT tower with a sequence-first transformer inside: images -> features."""

    input_resolution: int

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        x = self._embeds(x)
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)
        pooled, _ = self._pool(x)
        return pooled @ self.proj if self.proj is not None else pooled


class OpenAICLIP(CLIP):
    """open_clip's CLIP with OpenAI's `dtype`, `encode_image`, `encode_text` and `forward`."""

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the transformer weights, which OpenAI's code casts inputs to."""
        return self.transformer.get_cast_dtype()

    def encode_image(self, image: Tensor) -> Tensor:  # type: ignore[override]
        return self.visual(image.type(self.dtype))

    def encode_text(self, text: Tensor) -> Tensor:  # type: ignore[override]
        """Features at each sequence's end-of-text token (the largest id: argmax pooling)."""
        x = self.token_embedding(text).type(self.dtype) + self.positional_embedding.type(self.dtype)
        x = self.transformer(x.transpose(0, 1)).transpose(0, 1)
        x = self.ln_final(x).type(self.dtype)
        return x[torch.arange(x.shape[0], device=x.device), text.argmax(dim=-1)] @ self.text_projection

    def forward(self, image: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        """(logits_per_image, logits_per_text), as OpenAI's model returns them."""
        image_features = self.encode_image(image)
        text_features = self.encode_text(text)
        image_features = image_features / image_features.norm(dim=1, keepdim=True)
        text_features = text_features / text_features.norm(dim=1, keepdim=True)
        logits_per_image = self.logit_scale.exp() * image_features @ text_features.t()
        return logits_per_image, logits_per_image.t()

    def build_attention_mask(self) -> Tensor:
        return causal_mask(self.context_length, torch.empty(0))


def _sequence_first(transformer: Transformer, mask: Tensor | None, tower: str) -> None:
    for i, block in enumerate(transformer.resblocks):
        if type(block) not in (ResidualAttentionBlock, SequenceFirstBlock):
            raise TypeError(
                f"{tower} layer {i} is a {type(block).__name__}; OpenAI's interface needs open_clip's "
                "default ResidualAttentionBlock (OpenAI-style CLIP models)"
            )
        block.__class__ = SequenceFirstBlock
        block.attn_mask = mask
    transformer.__class__ = SequenceFirstTransformer


def openai_view(model: CLIP) -> OpenAICLIP:
    """`model` itself, now called with OpenAI's conventions (see the module docstring)."""
    if not isinstance(model, CLIP):
        raise TypeError(f"openai_view needs an open_clip CLIP with the built-in text tower, got {type(model).__name__}")
    if model.text_pool_type != "argmax":
        raise TypeError(f"OpenAI's encode_text pools at the largest token id; this model pools {model.text_pool_type!r}")
    _sequence_first(model.transformer, causal_mask(model.context_length, torch.empty(0)), "text")
    visual = model.visual
    if isinstance(visual, VisionTransformer):
        if visual.attn_pool is not None or visual.pool_type != "tok":
            raise TypeError("OpenAI's ViT pools the class token; this vision tower pools otherwise")
        _sequence_first(visual.transformer, None, "vision")
        visual.__class__ = OpenAIVisionTransformer
    size = visual.image_size
    visual.input_resolution = size[0] if isinstance(size, (tuple, list)) else size
    model.__class__ = OpenAICLIP
    return model

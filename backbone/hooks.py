"""How prompt-learning methods reach inside a CLIP tower without subclassing it.

A tower runs: embeddings -> `on_embed` -> (vision: ln_pre) -> for each block i:
`before_block(i, x)` -> block i (with `head_masks[i]`, capturing heads if i in
`capture_heads`) -> final norm -> pooling. Layer indices are 0-based.

Recipes:
  MaPLe / IVLP / PromptSRC / VPT-deep, vision: `on_embed` appends the first-layer prompts
    after the patch tokens (before ln_pre, as the official code does), then
    `before_block(i, x)` for i >= 1 does `replace_tokens(x, -n, prompts[i])`.
  Same methods, text: the first-layer prompts are part of the embeddings given to
    `forward_text`; `before_block(i, x)` for i >= 1 does `replace_tokens(x, 1, prompts[i])`.
  DeAR: `before_block(J, x)` inserts its tokens (vision: `insert_tokens(x, 1 + clip.num_patches, t)`;
    text: `insert_tokens(x, 1, t)` with `eot_shift=K`), later layers blend (`blend_tokens`) or
    replace them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Collection, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class TowerHooks:
    """Interventions on one tower's forward pass (see the module docstring).

    on_embed: [B, L, D] -> [B, L', D], once on the tower input: vision after class token +
        positional embedding and before ln_pre; text after positional embedding.
    before_block: (layer, [B, L, D]) -> [B, L', D] before every block.
    head_masks: layer -> additive per-head attention mask (0 open, -inf blocked) of shape
        [H, L, L] or [B, H, L, L] for the sequence length L entering that layer. Text masks
        are added to the causal mask; as the text tower truncates its input after the last
        end-of-text token, a text mask may also be larger than L (e.g. built for the full
        context length), and its top-left [L, L] block is used.
    capture_heads: layers whose per-head attention outputs go to TowerOutput.head_outputs.
    capture_tokens: the sequence positions captured (None: all); the head analysis takes
        slice(0, 1), the class token, which keeps its memory that of the model, not of B x L x H x width.
    eot_shift: text pooling index offset, for tokens inserted before the end-of-text token.
    """

    on_embed: Callable[[Tensor], Tensor] | None = None
    before_block: Callable[[int, Tensor], Tensor] | None = None
    head_masks: Mapping[int, Tensor] = field(default_factory=dict)
    capture_heads: Collection[int] = ()
    capture_tokens: slice | None = None
    eot_shift: int = 0

    @property
    def active(self) -> bool:
        return bool(
            self.on_embed or self.before_block or self.head_masks or self.capture_heads or self.eot_shift
        )


@dataclass
class TowerOutput:
    """features: pooled and projected [B, embed_dim]; tokens: final hidden states before
    ln_post/ln_final [B, L, width]; head_outputs: layer -> [B, L', H, width] at the captured positions, head
    h's attention output through its slice of out_proj (sum over h + out_proj.bias = attention)."""

    features: Tensor
    tokens: Tensor
    head_outputs: dict[int, Tensor] = field(default_factory=dict)


def _batched(x: Tensor, t: Tensor) -> Tensor:
    """t as [B, n, D] in x's dtype; [n, D] is shared by the whole batch."""
    if t.dim() == 2:
        t = t.unsqueeze(0).expand(x.shape[0], -1, -1)
    if t.dim() != 3 or t.shape[0] != x.shape[0] or t.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"tokens of shape {tuple(t.shape)} do not fit hidden states {tuple(x.shape)}: "
            f"expected [n, {x.shape[-1]}] or [{x.shape[0]}, n, {x.shape[-1]}]"
        )
    return t.to(x.dtype)


def insert_tokens(x: Tensor, position: int, t: Tensor) -> Tensor:
    """x [B, L, D] with t placed before index `position` (negative counts from the end)."""
    if position < 0:
        position += x.shape[1]
    if not 0 <= position <= x.shape[1]:
        raise IndexError(f"insert position {position} is outside 0..{x.shape[1]}")
    return torch.cat([x[:, :position], _batched(x, t), x[:, position:]], dim=1)


def append_tokens(x: Tensor, t: Tensor) -> Tensor:
    """x [B, L, D] with t after its last token."""
    return insert_tokens(x, x.shape[1], t)


def _token_span(x: Tensor, start: int, t: Tensor, verb: str) -> tuple[int, int]:
    """The positions [start, end) of x that t's tokens cover (a negative start counts from the end)."""
    if start < 0:
        start += x.shape[1]
    end = start + t.shape[1]
    if start < 0 or end > x.shape[1]:
        raise IndexError(f"{verb} {t.shape[1]} tokens from {start} overruns a sequence of {x.shape[1]}")
    return start, end


def replace_tokens(x: Tensor, start: int, t: Tensor) -> Tensor:
    """x [B, L, D] with positions start..start+n-1 replaced by t (negative start counts from
    the end: -n replaces the last n tokens, where VPT/MaPLe keep their vision prompts)."""
    t = _batched(x, t)
    start, end = _token_span(x, start, t, "replacing")
    return torch.cat([x[:, :start], t, x[:, end:]], dim=1)


def blend_tokens(x: Tensor, start: int, t: Tensor, beta: float) -> Tensor:
    """x [B, L, D] with positions start..start+n-1 set to beta * t + (1 - beta) * their value (MMRL++,
    DeAR: tokens blended with the previous layer's output at them).

    Computed as x times a per-position scale (1 outside the tokens) plus beta * t padded with zeros
    to x's length, not as a slice of x blended and concatenated: the backward of each slice of x
    fills, copies into and adds a zero tensor of x's size, which for a text tower of 100 prompts is
    most of what the blend costs; a padding's backward is a slice. The numbers are the slice form's,
    bit for bit: the scale multiplies in float32 (as a Python-float factor does) and both terms are
    rounded to x's dtype before they are added."""
    t = _batched(x, t)
    start, end = _token_span(x, start, t, "blending")
    scale = torch.ones(1, x.shape[1], 1, dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)
    scale[:, start:end] = 1 - beta
    return (x * scale).to(x.dtype) + F.pad(beta * t, (0, 0, start, x.shape[1] - end))

"""Running an open_clip transformer block by block, with TowerHooks.

Blocks without a head mask or head capture go through open_clip's own forward, so a pass
with no hooks is open_clip's computation. Blocks that need per-head control are recomputed
from their `nn.MultiheadAttention` weights, which open_clip's default
`ResidualAttentionBlock` (the one OpenAI models use) holds. So are blocks whose input carries a
gradient (prompts, tokens): open_clip's attention projects q, k, v from a transposed view of the
batch-first states, which matmul under autograd runs as one small product per position on the
CPU (3-5x slower on ViT-B/16); the recomputation projects the states directly, the same math
up to float round-off. Under CPU autocast (bf16) every block is recomputed: there, that
transposed projection copies its weight once per position (a 3x slower training step).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock, Transformer
from torch import Tensor, nn

from backbone.hooks import TowerHooks


def causal_mask(length: int, like: Tensor) -> Tensor:
    """Additive [L, L] mask letting token i see tokens 0..i (OpenAI's text mask)."""
    return torch.full((length, length), float("-inf"), device=like.device, dtype=like.dtype).triu_(1)


def head_attention(attn: nn.MultiheadAttention, x: Tensor, mask: Tensor | None, capture: bool,
                   positions: slice | None = None) -> tuple[Tensor, Tensor | None]:
    """Self-attention of x [B, L, D] with an additive mask broadcastable to [B, H, L, L].

    Returns the attention output [B, L, D] and, if `capture`, the per-head outputs [B, L', H, D] at
    `positions` (None: all L): head h's softmax(QK^T/sqrt(d))V times its column slice of out_proj,
    so that their sum over h plus out_proj.bias is the output.
    """
    B, L, D = x.shape
    H = attn.num_heads
    q, k, v = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)
    heads = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.to(q.dtype))
    out = F.linear(heads.transpose(1, 2).reshape(B, L, D), attn.out_proj.weight, attn.out_proj.bias)
    if not capture:
        return out, None
    kept = heads if positions is None else heads[:, :, positions]
    per_head = torch.einsum("bhld,ehd->blhe", kept, attn.out_proj.weight.view(D, H, D // H))
    return out, per_head


def _recomputable(block: nn.Module) -> str:
    """Why the block cannot be recomputed from its weights ("" if it can)."""
    if not isinstance(block, ResidualAttentionBlock) or hasattr(block, "ln_1_kv"):
        return (f"is a {type(block).__name__}; head masks and head capture need open_clip's default "
                "self-attention ResidualAttentionBlock (OpenAI-style CLIP models)")
    attn = block.attn
    if attn.in_proj_weight is None or attn.bias_k is not None or attn.add_zero_attn:
        return "has no plain nn.MultiheadAttention with packed in_proj, which head masks/capture need"
    return ""


def _check_block(block: nn.Module, layer: int) -> ResidualAttentionBlock:
    reason = _recomputable(block)
    if reason:
        raise TypeError(f"Layer {layer} {reason}")
    return block


def _check_head_mask(mask: Tensor, layer: int, x: Tensor, heads: int, sliceable: bool) -> Tensor:
    B, L = x.shape[:2]
    if sliceable and mask.dim() in (3, 4) and mask.shape[-1] >= L and mask.shape[-2] >= L:
        mask = mask[..., :L, :L]
    if (mask.dim() == 3 and mask.shape == (heads, L, L)) or (
        mask.dim() == 4 and mask.shape[0] in (1, B) and mask.shape[1:] == (heads, L, L)
    ):
        return mask.to(x.device)
    hint = " (text sequences are truncated after the last end-of-text token)" if sliceable else ""
    raise ValueError(
        f"head_masks[{layer}] has shape {list(mask.shape)}; expected [H, L, L] = [{heads}, {L}, {L}] "
        f"or [B, H, L, L] = [{B}, {heads}, {L}, {L}] for the {L} tokens entering layer {layer}{hint}"
    )


def _stock_block(block: nn.Module, x: Tensor, mask: Tensor | None, batch_first: bool) -> Tensor:
    if batch_first:
        return block(x, attn_mask=mask)
    return block(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)


def _manual_block(block: ResidualAttentionBlock, x: Tensor, mask: Tensor | None, capture: bool,
                  positions: slice | None = None) -> tuple[Tensor, Tensor | None]:
    out, per_head = head_attention(block.attn, block.ln_1(x), mask, capture, positions)
    x = x + block.ls_1(out)
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, per_head


def _cpu_autocast(x: Tensor) -> bool:
    return x.device.type == "cpu" and torch.is_autocast_enabled("cpu")


def check_layers(hooks: TowerHooks, layers: int, tower: str) -> None:
    bad = sorted(i for i in [*hooks.head_masks, *hooks.capture_heads] if not 0 <= i < layers)
    if bad:
        raise ValueError(f"{tower} tower has layers 0..{layers - 1}; hooks name layer(s) {bad}")


def run_blocks(transformer: Transformer, x: Tensor, hooks: TowerHooks, causal: bool,
               start: int = 0, stop: int | None = None) -> tuple[Tensor, dict[int, Tensor]]:
    """x [B, L, D], the states entering block `start`, through blocks start..stop-1 (default: to
    the last); returns the states after them and the captured head outputs."""
    head_outputs: dict[int, Tensor] = {}
    mask = None
    for i, block in enumerate(transformer.resblocks):
        if i < start or (stop is not None and i >= stop):
            continue
        if hooks.before_block is not None:
            x = hooks.before_block(i, x)
        if causal and (mask is None or mask.shape[-1] != x.shape[1]):
            mask = causal_mask(x.shape[1], x)
        head_mask = hooks.head_masks.get(i)
        capture = i in hooks.capture_heads
        if head_mask is None and not capture:
            if (x.requires_grad or _cpu_autocast(x)) and not _recomputable(block):
                x = _manual_block(block, x, mask, capture=False)[0]
            else:
                x = _stock_block(block, x, mask, transformer.batch_first)
            continue
        block = _check_block(block, i)
        layer_mask = mask
        if head_mask is not None:
            head_mask = _check_head_mask(head_mask, i, x, block.attn.num_heads, sliceable=causal)
            layer_mask = head_mask if mask is None else mask + head_mask
        x, per_head = _manual_block(block, x, layer_mask, capture, hooks.capture_tokens)
        if per_head is not None:
            head_outputs[i] = per_head
    return x, head_outputs

"""ClipBackbone against open_clip and hand-run references; loader names, errors and files."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import math
import time

import huggingface_hub.constants
import pytest
import torch
import torch.nn.functional as F
from open_clip.model import CLIP

from backbone import ClipBackbone, TowerHooks, append_tokens, blend_tokens, insert_tokens, load_clip, replace_tokens
from backbone import model_configs, sources
from backbone import precision
from backbone.precision import autocast, grad_scaler, resolve_dtype, weight_dtype

PROMPTS = ["a photo of a cat.", "a photo of a small red double-decker bus."]


@pytest.fixture(scope="module")
def tiny() -> ClipBackbone:
    torch.manual_seed(0)
    return load_clip("tiny-test", pretrained=False)


@pytest.fixture(scope="module")
def b16() -> ClipBackbone:
    torch.manual_seed(0)
    return load_clip("ViT-B/16", pretrained=False)


def images(clip: ClipBackbone, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, clip.image_size, clip.image_size, generator=torch.Generator().manual_seed(1))


def causal(length: int) -> torch.Tensor:
    return torch.full((length, length), float("-inf")).triu(1)


def ref_vision(clip: ClipBackbone, x_img: torch.Tensor, on_embed=None, before=None):
    """The ViT by hand, each open_clip block called directly."""
    v = clip.model.visual
    x = v.conv1(x_img).flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding.expand(x.shape[0], 1, -1), x], 1) + v.positional_embedding
    if on_embed:
        x = on_embed(x)
    x = v.ln_pre(x)
    for i, block in enumerate(v.transformer.resblocks):
        if before:
            x = before(i, x)
        x = block(x)
    return v.ln_post(x[:, 0]) @ v.proj, x


def ref_text(clip: ClipBackbone, emb: torch.Tensor, eot: torch.Tensor, before=None, shift: int = 0):
    """The text tower by hand over the full sequence (no truncation)."""
    m = clip.model
    x = emb + m.positional_embedding
    for i, block in enumerate(m.transformer.resblocks):
        if before:
            x = before(i, x)
        x = block(x, attn_mask=causal(x.shape[1]))
    pooled = m.ln_final(x[torch.arange(x.shape[0]), eot + shift])
    return pooled @ m.text_projection, x


def manual_heads(attn: torch.nn.MultiheadAttention, h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-head outputs [B, L, H, D] with explicit softmax, one head at a time."""
    B, L, D = h.shape
    H = attn.num_heads
    d = D // H
    q, k, v = (F.linear(h, w, b) for w, b in zip(attn.in_proj_weight.chunk(3), attn.in_proj_bias.chunk(3)))
    outs = []
    for j in range(H):
        cols = slice(j * d, (j + 1) * d)
        scores = q[..., cols] @ k[..., cols].transpose(1, 2) / math.sqrt(d)
        if mask is not None:
            scores = scores + mask[j]
        outs.append(scores.softmax(-1) @ v[..., cols] @ attn.out_proj.weight[:, cols].T)
    return torch.stack(outs, dim=2)


# ---- no hooks: open_clip's numbers ------------------------------------------------------
@torch.no_grad()
def test_vit_b16_random_init_matches_open_clip(b16):
    x, ids = images(b16), b16.tokenize(PROMPTS)
    img, txt = b16.encode_image(x), b16.encode_text(ids)
    assert img.shape == (2, 512) and txt.shape == (2, 512)
    torch.testing.assert_close(img, b16.model.encode_image(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(txt, b16.model.encode_text(ids), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_tiny_matches_open_clip_and_hand_reference(tiny):
    x, ids = images(tiny), tiny.tokenize(PROMPTS)
    torch.testing.assert_close(tiny.encode_image(x), tiny.model.encode_image(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(tiny.encode_text(ids), tiny.model.encode_text(ids), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ref_vision(tiny, x)[0], tiny.model.encode_image(x), rtol=1e-5, atol=1e-6)
    assert tiny.num_patches == 4**2 and tiny.embed_image(x).shape == (2, 1 + 4**2, 64)


@pytest.mark.parametrize(
    "name, sizes",
    [  # vision width/layers/heads, text width/layers/heads, embed_dim, image_size
        ("ViT-B/32", (768, 12, 12, 512, 12, 8, 512, 224)),
        ("ViT-B/16", (768, 12, 12, 512, 12, 8, 512, 224)),
        ("ViT-L/14", (1024, 24, 16, 768, 12, 12, 768, 224)),
        ("ViT-L/14@336px", (1024, 24, 16, 768, 12, 12, 768, 336)),
        ("RN50", (2048, 16, 32, 512, 12, 8, 1024, 224)),
        ("tiny-test", (64, 2, 4, 48, 2, 4, 32, 32)),
    ],
)
def test_sizes_read_from_model(name, sizes):
    clip = load_clip(name, pretrained=False, device="meta")
    got = (clip.vision_width, clip.vision_layers, clip.vision_heads, clip.text_width, clip.text_layers,
           clip.text_heads, clip.embed_dim, clip.image_size)
    assert got == sizes
    assert clip.context_length == 77 and clip.is_vit == name.startswith(("ViT", "tiny"))


def test_frozen_eval_and_prompt_gradients(tiny):
    assert not any(p.requires_grad for p in tiny.parameters())
    tiny.train()
    assert not tiny.training and not tiny.model.training
    ids = tiny.tokenize(PROMPTS)
    ctx = torch.nn.Parameter(torch.randn(3, tiny.text_width))
    emb = replace_tokens(tiny.embed_tokens(ids), 1, ctx)
    tiny.forward_text(emb, tiny.eot_index(ids)).features.square().sum().backward()
    assert ctx.grad is not None and ctx.grad.abs().sum() > 0


# ---- truncation ---------------------------------------------------------------------------
@torch.no_grad()
def test_text_truncation_equals_full_length(tiny):
    ids = tiny.tokenize(PROMPTS)
    emb, eot = tiny.embed_tokens(ids), tiny.eot_index(ids)
    assert eot.tolist() == [7, 12]  # sot, 6 or 11 word/punctuation tokens, eot
    short = tiny.forward_text(emb, eot)
    full = tiny.forward_text(emb, eot, truncate=False)
    assert short.tokens.shape == (2, 13, 48) and full.tokens.shape == (2, 77, 48)
    torch.testing.assert_close(short.features, full.features, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(short.tokens, full.tokens[:, :13], rtol=1e-5, atol=1e-6)
    ref, _ = ref_text(tiny, emb, eot)
    torch.testing.assert_close(short.features, ref, rtol=1e-5, atol=1e-6)


# ---- token helpers --------------------------------------------------------------------------
def test_token_helpers_shapes_and_values():
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).view(2, 4, 3)
    shared, per_item = torch.full((2, 3), -1.0), -torch.rand(2, 2, 3)
    torch.testing.assert_close(append_tokens(x, shared), torch.cat([x, shared.expand(2, 2, 3)], 1))
    torch.testing.assert_close(insert_tokens(x, 1, per_item), torch.cat([x[:, :1], per_item, x[:, 1:]], 1))
    torch.testing.assert_close(replace_tokens(x, 1, shared), torch.cat([x[:, :1], shared.expand(2, 2, 3), x[:, 3:]], 1))
    torch.testing.assert_close(replace_tokens(x, -2, per_item), torch.cat([x[:, :2], per_item], 1))
    with pytest.raises(ValueError, match=r"expected \[n, 3\] or \[2, n, 3\]"):
        append_tokens(x, torch.zeros(2, 5))
    with pytest.raises(IndexError):
        replace_tokens(x, 3, shared)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_blend_tokens_gives_the_numbers_of_the_slice_form(dtype):
    """MMRL++'s blend without a slice of x: the same values, bit for bit, as beta * t + (1 - beta) * x's
    slice concatenated back (Python-float factors), in every precision; gradients to x bit for bit."""
    torch.manual_seed(0)
    beta = 0.9
    x = (torch.randn(3, 7, 5) * 3).to(dtype).requires_grad_()
    t = torch.randn(2, 5).to(dtype).requires_grad_()
    reference = torch.cat([x[:, :1], beta * t.expand(3, -1, -1) + (1 - beta) * x[:, 1:3], x[:, 3:]], 1)
    out = blend_tokens(x, 1, t, beta)
    assert out.dtype == dtype and torch.equal(out, reference)
    grad = torch.randn(3, 7, 5).to(dtype)
    want = torch.autograd.grad(reference, (x, t), grad)
    got = torch.autograd.grad(out, (x, t), grad)
    assert torch.equal(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
    assert torch.equal(blend_tokens(x, -2, t, beta)[:, :5], x[:, :5])
    with pytest.raises(IndexError):
        blend_tokens(x, 6, t, beta)


# ---- hooks against hand-run blocks ----------------------------------------------------------
@torch.no_grad()
def test_vision_append_then_replace_like_maple(tiny):
    x = images(tiny)
    g = torch.Generator().manual_seed(2)
    first, deep = torch.randn(3, 64, generator=g), torch.randn(3, 64, generator=g)
    hooks = TowerHooks(
        on_embed=lambda t: append_tokens(t, first),
        before_block=lambda i, t: replace_tokens(t, -3, deep) if i == 1 else t,
    )
    out = tiny.forward_image(x, hooks)
    ref, ref_tokens = ref_vision(
        tiny, x,
        on_embed=lambda t: torch.cat([t, first.expand(2, 3, 64)], 1),
        before=lambda i, t: torch.cat([t[:, :-3], deep.expand(2, 3, 64)], 1) if i == 1 else t,
    )
    assert out.tokens.shape == (2, 17 + 3, 64)
    torch.testing.assert_close(out.features, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.tokens, ref_tokens, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out.features, tiny.encode_image(x), atol=1e-4)


@torch.no_grad()
def test_vision_insert_after_patches_like_dear(tiny):
    x = images(tiny)
    t = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(3))
    out = tiny.forward_image(x, TowerHooks(before_block=lambda i, s: insert_tokens(s, 17, t) if i == 1 else s))
    ref, ref_tokens = ref_vision(tiny, x, before=lambda i, s: torch.cat([s, t], 1) if i == 1 else s)
    assert out.tokens.shape == (2, 22, 64)
    torch.testing.assert_close(out.features, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.tokens, ref_tokens, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_text_deep_replace_like_maple(tiny):
    ids = tiny.tokenize(PROMPTS)
    emb, eot = tiny.embed_tokens(ids), tiny.eot_index(ids)
    ctx = torch.randn(2, 2, 48, generator=torch.Generator().manual_seed(4))  # per layer 0..1, 2 tokens
    out = tiny.forward_text(emb, eot, TowerHooks(before_block=lambda i, s: replace_tokens(s, 1, ctx[i]) if i else s))
    ref, _ = ref_text(tiny, emb, eot, before=lambda i, s: torch.cat([s[:, :1], ctx[i].expand(2, 2, 48), s[:, 3:]], 1) if i else s)
    torch.testing.assert_close(out.features, ref, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_text_insert_with_eot_shift_like_dear(tiny):
    ids = tiny.tokenize(PROMPTS)
    emb, eot = tiny.embed_tokens(ids), tiny.eot_index(ids)
    t = torch.randn(2, 48, generator=torch.Generator().manual_seed(5))
    hooks = TowerHooks(before_block=lambda i, s: insert_tokens(s, 1, t) if i == 1 else s, eot_shift=2)
    out = tiny.forward_text(emb, eot, hooks)
    ref, ref_tokens = ref_text(
        tiny, emb, eot, before=lambda i, s: torch.cat([s[:, :1], t.expand(2, 2, 48), s[:, 1:]], 1) if i == 1 else s, shift=2
    )
    assert out.tokens.shape == (2, 13 + 2, 48)  # truncated, then grown by the insertion
    torch.testing.assert_close(out.features, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.tokens, ref_tokens[:, :15], rtol=1e-5, atol=1e-6)


def test_blocks_carrying_a_gradient_are_recomputed_with_the_same_result(tiny, monkeypatch):
    """open_clip's attention is slow under autograd (transposed q/k/v projection), so such blocks run
    on the recomputed path; without a gradient they stay open_clip's own."""
    from backbone import blocks
    ids = tiny.tokenize(PROMPTS)
    emb, eot = tiny.embed_tokens(ids), tiny.eot_index(ids)
    calls, real = [], blocks._manual_block
    monkeypatch.setattr(blocks, "_manual_block", lambda *a, **k: calls.append(1) or real(*a, **k))
    prompts = emb.clone().requires_grad_(True)
    with_grad = tiny.forward_text(prompts, eot).features
    assert len(calls) == tiny.text_layers
    with torch.no_grad():
        plain = tiny.forward_text(emb, eot).features
    assert len(calls) == tiny.text_layers  # no gradient: the stock blocks
    torch.testing.assert_close(with_grad, plain, rtol=1e-5, atol=1e-6)
    with_grad.sum().backward()
    assert prompts.grad.abs().sum() > 0


@torch.no_grad()
def test_cpu_autocast_recomputes_every_block(tiny, monkeypatch):
    """Under CPU bf16 autocast open_clip's transposed q/k/v projection copies the weight once per
    position (3x slower steps), so every block runs recomputed; in fp32 the stock blocks stay."""
    from backbone import blocks
    x = images(tiny)
    calls, real = [], blocks._manual_block
    monkeypatch.setattr(blocks, "_manual_block", lambda *a, **k: calls.append(1) or real(*a, **k))
    fp32 = tiny.encode_image(x)
    assert calls == []
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = tiny.encode_image(x)
    assert len(calls) == tiny.vision_layers
    torch.testing.assert_close(bf16.float(), fp32, rtol=0.05, atol=0.05)


@torch.no_grad()
def test_text_prefix_then_upper_layers_equal_the_whole_tower(tiny):
    """text_states(k) + forward_text(start_layer=k) = one forward_text (MMRL's cached prefix)."""
    ids = tiny.tokenize(PROMPTS)
    emb, eot = tiny.embed_tokens(ids), tiny.eot_index(ids)
    t = torch.randn(2, 48, generator=torch.Generator().manual_seed(5))
    hooks = TowerHooks(before_block=lambda i, s: insert_tokens(s, 1, t) if i == 1 else s, eot_shift=2)
    whole = tiny.forward_text(emb, eot, hooks)
    upper = tiny.forward_text(tiny.text_states(emb, eot, 1), eot, hooks, start_layer=1)
    assert torch.equal(upper.features, whole.features) and torch.equal(upper.tokens, whole.tokens)
    last = tiny.forward_text(tiny.text_states(emb, eot, 2), eot, start_layer=2)  # the prefix is the whole tower
    assert torch.equal(last.features, tiny.forward_text(emb, eot).features)
    hooks0 = TowerHooks(before_block=lambda i, s: insert_tokens(s, 1, t) if i == 0 else s, eot_shift=2)
    first = tiny.forward_text(tiny.text_states(emb, eot, 0), eot, hooks0, start_layer=0)  # positions added once
    assert torch.equal(first.features, tiny.forward_text(emb, eot, hooks0).features)
    x = emb[:, :13] + tiny.model.positional_embedding[:13]  # by hand: block 0 on the truncated input
    x = tiny.model.transformer.resblocks[0](x, attn_mask=torch.full((13, 13), float("-inf")).triu(1))
    torch.testing.assert_close(tiny.text_states(emb, eot, 1), x, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="on_embed acts on the tower input"):
        tiny.forward_text(x, eot, TowerHooks(on_embed=lambda y: y), start_layer=1)


@torch.no_grad()
def test_eot_shift_moves_pooling_index(tiny):
    ids = tiny.tokenize(PROMPTS)
    emb, eot = tiny.embed_tokens(ids), tiny.eot_index(ids)
    out = tiny.forward_text(emb, eot, TowerHooks(eot_shift=-2))
    rows = torch.arange(2)
    torch.testing.assert_close(out.features, tiny.text_head(out.tokens[rows, eot - 2]))
    assert not torch.allclose(out.features, tiny.text_head(out.tokens[rows, eot]), atol=1e-4)


# ---- head masks and capture -----------------------------------------------------------------
@torch.no_grad()
def test_zero_head_masks_equal_no_mask(tiny):
    x, ids = images(tiny), tiny.tokenize(PROMPTS)
    vision = TowerHooks(head_masks={0: torch.zeros(4, 17, 17), 1: torch.zeros(2, 4, 17, 17)})
    torch.testing.assert_close(tiny.encode_image(x, vision), tiny.encode_image(x), rtol=1e-5, atol=1e-6)
    text = TowerHooks(head_masks={0: torch.zeros(4, 13, 13), 1: torch.zeros(4, 77, 77)})  # 77: sliced to 13
    torch.testing.assert_close(tiny.encode_text(ids, text), tiny.encode_text(ids), rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_mask_on_one_head_changes_only_that_head(tiny):
    x = images(tiny)
    mask = torch.zeros(4, 17, 17)
    mask[2, :, 3] = float("-inf")  # head 2 may not look at patch token 3
    plain = tiny.forward_image(x, TowerHooks(capture_heads={0}))
    masked = tiny.forward_image(x, TowerHooks(capture_heads={0}, head_masks={0: mask}))
    a, b = plain.head_outputs[0], masked.head_outputs[0]
    assert a.shape == (2, 17, 4, 64)
    torch.testing.assert_close(b[:, :, [0, 1, 3]], a[:, :, [0, 1, 3]])
    assert (b[:, :, 2] - a[:, :, 2]).abs().max() > 1e-3
    h = tiny.model.visual.transformer.resblocks[0].ln_1(tiny.embed_image(x))
    attn = tiny.model.visual.transformer.resblocks[0].attn
    torch.testing.assert_close(b, manual_heads(attn, h, mask), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(a, manual_heads(attn, h, None), rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_capture_tokens_keeps_only_those_positions(tiny):
    """The head analysis captures the class token alone: the same numbers as a full capture's first
    position, without the [B, L, H, width] tensor per layer that made a ViT-B/16 analysis take 6 GB."""
    x = images(tiny)
    full = tiny.forward_image(x, TowerHooks(capture_heads={0, 1}))
    cls = tiny.forward_image(x, TowerHooks(capture_heads={0, 1}, capture_tokens=slice(0, 1)))
    for layer in (0, 1):
        assert cls.head_outputs[layer].shape == (2, 1, 4, 64)
        torch.testing.assert_close(cls.head_outputs[layer], full.head_outputs[layer][:, :1])
    torch.testing.assert_close(cls.tokens, full.tokens)


@torch.no_grad()
def test_head_outputs_sum_to_attention_output(tiny):
    x = images(tiny)
    vis = tiny.forward_image(x, TowerHooks(capture_heads={0}))
    block = tiny.model.visual.transformer.resblocks[0]
    h = block.ln_1(tiny.embed_image(x))
    expected = block.attn(h, h, h, need_weights=False)[0]
    torch.testing.assert_close(vis.head_outputs[0].sum(2) + block.attn.out_proj.bias, expected, rtol=1e-5, atol=1e-5)

    ids = tiny.tokenize(PROMPTS)
    seen = {}
    record = lambda i, s: seen.setdefault(i, s)  # noqa: E731
    txt = tiny.forward_text(tiny.embed_tokens(ids), tiny.eot_index(ids), TowerHooks(before_block=record, capture_heads={1}))
    block = tiny.model.transformer.resblocks[1]
    h = block.ln_1(seen[1])
    expected = block.attn(h, h, h, need_weights=False, attn_mask=causal(13))[0]
    assert txt.head_outputs[1].shape == (2, 13, 4, 48)
    torch.testing.assert_close(txt.head_outputs[1].sum(2) + block.attn.out_proj.bias, expected, rtol=1e-5, atol=1e-5)


def test_wrong_mask_shape_and_layer_are_explained(tiny):
    x = images(tiny)
    with pytest.raises(ValueError, match=r"expected \[H, L, L\] = \[4, 17, 17\] or \[B, H, L, L\] = \[2, 4, 17, 17\]"):
        tiny.encode_image(x, TowerHooks(head_masks={1: torch.zeros(4, 16, 16)}))
    with pytest.raises(ValueError, match=r"layers 0..1; hooks name layer\(s\) \[5\]"):
        tiny.encode_image(x, TowerHooks(capture_heads={5}))


def test_resnet_tower_without_hooks_only():
    torch.manual_seed(0)
    model = CLIP(
        embed_dim=32, quick_gelu=True,
        vision_cfg={"layers": [1, 1, 1, 1], "width": 8, "image_size": 64, "head_width": 64},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    ).eval()
    clip = ClipBackbone(model, tokenizer=None)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(clip.encode_image(x), model.encode_image(x))
    assert not clip.is_vit and clip.vision_width == 8 * 32
    with pytest.raises(TypeError, match="need a ViT"):
        clip.encode_image(x, TowerHooks(capture_heads={0}))


# ---- precision ------------------------------------------------------------------------------
def matmul_dtype(context) -> torch.dtype:
    with context:
        return (torch.ones(2, 2) @ torch.ones(2, 2)).dtype


def test_precision_policy(capsys):
    assert weight_dtype("fp16", "cpu") == torch.float32
    assert "fp16 on CPU" in capsys.readouterr().out
    assert weight_dtype("fp16", "cuda") == torch.float16
    assert weight_dtype("amp", "cuda") == weight_dtype("fp32", "cuda") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    with pytest.raises(ValueError, match="Did you mean 'fp16'"):
        weight_dtype("fp61", "cpu")
    assert matmul_dtype(autocast("amp", "cpu", "bf16")) == torch.bfloat16  # forced: whatever the CPU
    assert matmul_dtype(autocast("amp", "cpu", "fp32")) == torch.float32
    assert matmul_dtype(autocast("fp32", "cpu")) == torch.float32
    assert not grad_scaler("amp", "cpu").is_enabled()


@pytest.mark.parametrize("amx", [True, False], ids=["AMX", "no AMX"])
def test_cpu_amp_auto_follows_the_cpu(amx, monkeypatch):
    """TRAINER.CPU_AMP auto: bf16 autocast where the CPU has AMX, fp32 where it has not (bf16
    would be slower there); both kinds of machine are faked, whichever this one is."""
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: amx)
    assert matmul_dtype(autocast("amp", "cpu")) == (torch.bfloat16 if amx else torch.float32)
    assert matmul_dtype(autocast("amp", "cpu", "auto")) == (torch.bfloat16 if amx else torch.float32)
    note = precision.amp_note("amp", "cpu")
    assert note.startswith("PREC amp on CPU: bf16 autocast (this CPU has AMX" if amx else
                           "PREC amp on CPU: running in fp32, as this CPU has no fast bf16 units (AMX)")


@pytest.mark.parametrize("value, expected", [("1", True), ("0", False)])
def test_the_amx_probe_can_be_forced(value, expected, monkeypatch):
    monkeypatch.setenv(precision.AMX_ENV, value)
    precision.cpu_has_fast_bf16.cache_clear()
    try:
        assert precision.cpu_has_fast_bf16() is expected
        monkeypatch.setenv(precision.AMX_ENV, "yes")
        precision.cpu_has_fast_bf16.cache_clear()
        with pytest.raises(ValueError, match="PROMPTLAB_CPU_AMX must be 1 or 0"):
            precision.cpu_has_fast_bf16()
    finally:
        monkeypatch.undo()
        precision.cpu_has_fast_bf16.cache_clear()


@torch.no_grad()
def test_low_precision_load_keeps_layernorm_fp32():
    torch.manual_seed(0)
    clip = load_clip("tiny-test", pretrained=False, precision="bfloat16")
    assert clip.dtype == torch.bfloat16 and clip.model.ln_final.weight.dtype == torch.float32
    ids = clip.tokenize(PROMPTS)
    assert clip.encode_text(ids).dtype == torch.bfloat16
    assert clip.encode_image(images(clip)).shape == (2, 32)


# ---- loader ---------------------------------------------------------------------------------
def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as err:
        load_clip("ViT-B16", pretrained=False)
    msg = str(err.value)
    assert "Did you mean 'ViT-B/16'?" in msg
    for part in ("RN50", "ViT-L/14@336px", "tiny-test", "'ARCH:TAG'", "ARCH:/path"):
        assert part in msg
    with pytest.raises(ValueError, match="nor an existing file.*Tags: .*laion2b_s34b_b88k"):
        load_clip("ViT-B-16:laion2b")


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIP_CACHE_DIR", str(tmp_path / "clip"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def test_offline_openai_name_fails_fast_with_paths(empty_caches, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as err:
        load_clip("ViT-B/16")
    assert time.monotonic() - start < 10
    assert str(empty_caches / "clip" / "ViT-B-16.pt") in str(err.value)
    assert "timm/vit_base_patch16_clip_224.openai" in str(err.value)


def test_unreachable_hub_fails_fast(empty_caches, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(sources, "host_reachable", lambda url, timeout=3.0: False)
    with pytest.raises(FileNotFoundError, match="huggingface.co is unreachable.*laion/CLIP-ViT-B-16-laion2B-s34B-b88K"):
        load_clip("ViT-B-16:laion2b_s34b_b88k")


def openai_format_model() -> CLIP:
    """A small CLIP whose sizes OpenAI's state-dict conventions can infer (64-wide heads)."""
    torch.manual_seed(0)
    return CLIP(
        embed_dim=64, quick_gelu=True,
        vision_cfg={"layers": 1, "width": 128, "patch_size": 16, "image_size": 32, "head_width": 64},
        text_cfg={"context_length": 77, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 1},
    ).eval()


@torch.no_grad()
@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("jit", [False, True])
def test_openai_file_by_path(tmp_path, jit):
    model = openai_format_model()
    path = tmp_path / "tiny-openai.pt"
    if jit:
        inputs = {"encode_image": (torch.ones(1, 3, 32, 32),), "encode_text": (torch.zeros(1, 77, dtype=torch.long),)}
        torch.jit.save(torch.jit.trace_module(model, inputs, check_trace=False), str(path))
    else:
        torch.save(model.state_dict(), path)
    clip = load_clip(str(path))
    x, ids = torch.randn(2, 3, 32, 32), clip.tokenize(PROMPTS)
    torch.testing.assert_close(clip.encode_image(x), model.encode_image(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(clip.encode_text(ids), model.encode_text(ids), rtol=1e-5, atol=1e-6)
    assert (clip.text_heads, clip.vision_heads) == (2, 2)


@torch.no_grad()
def test_repo_weights_from_weights_dir(tmp_path, monkeypatch):
    monkeypatch.setattr(model_configs, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'tiny-test.pt'}.*pretrained=False"):
        load_clip("tiny-test")
    torch.manual_seed(1)
    source = model_configs.build_model(model_configs.read_config("tiny-test")).eval()
    torch.save({k: v.half() for k, v in source.state_dict().items()}, tmp_path / "tiny-test.pt")
    source.half().float()  # the values the fp16 file holds
    clip = load_clip("tiny-test")
    assert clip.dtype == torch.float32 and not any(p.requires_grad for p in clip.parameters())
    x, ids = images(clip), clip.tokenize(PROMPTS)
    torch.testing.assert_close(clip.encode_image(x), source.encode_image(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(clip.encode_text(ids), source.encode_text(ids), rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_image_head_direct_decomposes_ln_post_exactly(tiny):
    x = images(tiny, 3)
    out = tiny.forward_image(x, TowerHooks(capture_heads={1}))
    final = out.tokens[:, 0]
    heads = out.head_outputs[1][:, 0]  # [B, H, width] at the class token
    rest = final - heads.sum(1)
    parts = torch.cat([heads, rest[:, None]], dim=1)
    direct = tiny.image_head_direct(parts, final)
    v = tiny.model.visual
    assert direct.shape == (3, 5, tiny.embed_dim)
    torch.testing.assert_close(direct.sum(1), tiny.image_head(final) - v.ln_post.bias @ v.proj, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(tiny.image_norm(final) @ tiny.image_projection, tiny.image_head(final))
    ref = (heads - heads.mean(-1, keepdim=True)) * v.ln_post.weight / (final.var(-1, unbiased=False) + 1e-5).sqrt()[:, None, None]
    torch.testing.assert_close(direct[:, :4], ref @ v.proj, rtol=1e-4, atol=1e-5)

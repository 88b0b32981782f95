"""DeAR's role masks and attribute-token injection: exact mask semantics on a tiny CLIP."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from backbone import TowerHooks, load_clip
from headroles.rolemap import HeadRole, RoleMapError, parse_role_map, read_role_map
from trainers.dear.masks import head_blocked, role_masks
from trainers.dear.model import DeARCLIP, DeARSettings
from trainers.representation import token_hook

ATTRS = ("color", "shape", "texture")
N_ORIG = 17  # tiny-test: class token + 4x4 patches


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return load_clip("tiny-test", pretrained=False)


def images(n=2):
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def role_map(roles_by_head, layers=(1, 2)):
    heads = [{"layer": l, "head": h, **r} for l in layers for h, r in enumerate(roles_by_head)]
    return parse_role_map({"backbone": "tiny-test", "heads": heads}, "synthetic.json")


def model_for(clip, roles_by_head, mode="role", attr_tokens=True):
    rm = role_map(roles_by_head)
    masks = role_masks(rm, [1, 2], 4, ATTRS, N_ORIG, mode) if mode != "none" else None
    s = DeARSettings(attributes=ATTRS, attr_tokens=attr_tokens, n_text=2, first_layer=0, text_first_layer=0, rep_dim=32)
    torch.manual_seed(3)
    return DeARCLIP(clip, ["a photo of a cat.", "a photo of a dog."], s, masks)


GEN = {"role": "generalization"}
MIX = {"role": "mixed"}


def test_head_blocked_patterns_exact():
    n_orig, L = 3, 6
    gen = head_blocked(HeadRole(9, 0, "generalization"), ATTRS, n_orig, "role")
    want = torch.zeros(L, L, dtype=torch.bool)
    want[:3, 3:] = want[3:, :3] = True
    assert torch.equal(gen, want)
    shape = head_blocked(HeadRole(9, 1, "attribute", "shape"), ATTRS, n_orig, "role")
    want = torch.zeros(L, L, dtype=torch.bool)
    for col in (3, 5):  # color and texture tokens cut off, shape token (4) open
        want[:3, col] = want[col, :3] = True
    assert torch.equal(shape, want)
    assert not head_blocked(HeadRole(9, 2, "mixed"), ATTRS, n_orig, "role").any()
    # low-entropy head of a non-core concept: treated like Generalization
    assert torch.equal(head_blocked(HeadRole(9, 3, "attribute", "scene"), ATTRS, n_orig, "role"), gen)
    # ablation: only Generalization heads masked
    assert not head_blocked(HeadRole(9, 1, "attribute", "shape"), ATTRS, n_orig, "generalization").any()
    assert torch.equal(head_blocked(HeadRole(9, 0, "generalization"), ATTRS, n_orig, "generalization"), gen)


def test_masks_are_broadcast_per_layer_with_open_diagonal():
    rm = role_map([GEN, {"role": "attribute", "attribute": "texture"}, MIX, GEN])
    masks = role_masks(rm, [1, 2], 4, ATTRS, N_ORIG, "role")
    assert masks.shape == (2, 4, N_ORIG + 3, N_ORIG + 3)  # [layers, H, L, L]: no batch copies
    assert torch.equal(masks.diagonal(dim1=2, dim2=3), torch.zeros(2, 4, N_ORIG + 3))
    assert set(masks.unique().tolist()) == {0.0, float("-inf")}


@torch.no_grad()
def test_all_generalization_leaves_original_tokens_exactly_as_without_tokens(clip):
    model = model_for(clip, [GEN] * 4)
    x = images()
    hooks = model.vision_hooks()
    assert all(m.shape == (4, N_ORIG + 3, N_ORIG + 3) for m in hooks.head_masks.values())
    hooks.capture_heads = {0, 1}
    with_tokens = clip.forward_image(x, hooks)
    plain = clip.forward_image(x, TowerHooks(capture_heads={0, 1}))
    assert with_tokens.tokens.shape == (2, N_ORIG + 3, 64)
    torch.testing.assert_close(with_tokens.tokens[:, :N_ORIG], plain.tokens, rtol=1e-5, atol=1e-6)
    for layer in (0, 1):  # every masked layer's CLS and patch outputs, head by head
        torch.testing.assert_close(with_tokens.head_outputs[layer][:, :N_ORIG], plain.head_outputs[layer], rtol=1e-5, atol=1e-6)
    cls, attr = model.image_features(x)
    torch.testing.assert_close(cls, clip.encode_image(x), rtol=1e-5, atol=1e-6)
    assert attr.shape == (2, 3, clip.embed_dim)


@torch.no_grad()
def test_all_mixed_and_attribute_heads_change_original_tokens(clip):
    x = images()
    plain = clip.encode_image(x)
    for roles in ([MIX] * 4, [{"role": "attribute", "attribute": "color"}] * 4):
        cls, _ = model_for(clip, roles).image_features(x)
        assert (cls - plain).abs().max() > 1e-3
    cls, _ = model_for(clip, [GEN] * 4, mode="none").image_features(x)  # mask off: tokens leak in
    assert (cls - plain).abs().max() > 1e-3


def attention_probs(clip, layer, x_in, mask):
    """Softmax attention weights [B, H, L, L] of a vision block, by hand."""
    block = clip.model.visual.transformer.resblocks[layer]
    h = block.ln_1(x_in)
    B, L, D = h.shape
    H = block.attn.num_heads
    q, k, _ = F.linear(h, block.attn.in_proj_weight, block.attn.in_proj_bias).view(B, L, 3, H, D // H).permute(2, 0, 3, 1, 4)
    return (q @ k.transpose(-1, -2) / math.sqrt(D // H) + mask).softmax(-1)


@torch.no_grad()
def test_attribute_head_gives_blocked_pairs_zero_weight(clip):
    roles = [{"role": "attribute", "attribute": "shape"}, GEN, MIX, {"role": "attribute", "attribute": "color"}]
    model = model_for(clip, roles)
    x = images()
    seen = {}
    insert = model.vision_hooks().before_block

    def record(i, s):
        s = insert(i, s)
        seen[i] = s
        return s

    clip.forward_image(x, TowerHooks(before_block=record, head_masks=model.vision_hooks().head_masks))
    probs = attention_probs(clip, 1, seen[1], model.masks[1])
    orig, color, shape, texture = slice(0, N_ORIG), N_ORIG, N_ORIG + 1, N_ORIG + 2
    head = probs[:, 0]  # attribute head for "shape"
    for blocked in (color, texture):
        assert torch.equal(head[:, orig, blocked], torch.zeros(2, N_ORIG))
        assert torch.equal(head[:, blocked, orig], torch.zeros(2, N_ORIG))
    assert (head[:, orig, shape] > 0).all() and (head[:, shape, orig] > 0).all()
    assert (head[:, N_ORIG:, N_ORIG:] > 0).all()  # attribute tokens see each other
    assert torch.equal(probs[:, 1, orig, N_ORIG:], torch.zeros(2, N_ORIG, 3))  # generalization
    assert (probs[:, 2] > 0).all()  # mixed


@torch.no_grad()
def test_blocked_token_cannot_reach_attribute_head_output(clip):
    roles = [{"role": "attribute", "attribute": "shape"}, GEN, MIX, GEN]
    masks = role_masks(role_map(roles), [1, 2], 4, ATTRS, N_ORIG, "role")
    g = torch.Generator().manual_seed(5)
    tokens = torch.randn(2, 3, 64, generator=g)

    def heads(t):
        hooks = TowerHooks(before_block=token_hook(t, [0, 1], N_ORIG, 0.9), head_masks={0: masks[0]}, capture_heads={0})
        return clip.forward_image(images(), hooks).head_outputs[0][:, :N_ORIG]

    base = heads(tokens)
    color_moved, shape_moved = tokens.clone(), tokens.clone()
    color_moved[0, 0] = torch.randn(64, generator=g)  # the colour token at the insertion layer
    shape_moved[0, 1] = torch.randn(64, generator=g)
    torch.testing.assert_close(heads(color_moved)[:, :, [0, 1]], base[:, :, [0, 1]], rtol=0, atol=0)
    assert (heads(color_moved)[:, :, 2] - base[:, :, 2]).abs().max() > 1e-4  # mixed head sees it
    assert (heads(shape_moved)[:, :, 0] - base[:, :, 0]).abs().max() > 1e-4  # shape head sees its token


@torch.no_grad()
def test_tokens_inserted_after_patches_and_blended_with_beta(clip):
    t = torch.randn(2, 3, 64, generator=torch.Generator().manual_seed(6))
    seen = {}
    hook = token_hook(t, [0, 1], N_ORIG, 0.9)

    def record(i, s):
        out = hook(i, s)
        seen[i] = (s, out)
        return out

    clip.forward_image(images(), TowerHooks(before_block=record))
    before0, after0 = seen[0]
    assert torch.equal(after0[:, :N_ORIG], before0) and torch.equal(after0[:, N_ORIG:], t[0].expand(2, 3, 64))
    before1, after1 = seen[1]
    torch.testing.assert_close(after1[:, N_ORIG:], 0.9 * t[1] + 0.1 * before1[:, N_ORIG:])
    assert torch.equal(after1[:, :N_ORIG], before1[:, :N_ORIG])


def test_role_map_errors_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(RoleMapError, match=r"No role map at .*nope.json: make one with `python tools/head_roles.py"):
        read_role_map(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"heads": [{"layer": 9, "head": 0, "role": "attribute"}]}))
    with pytest.raises(RoleMapError, match=r"bad.json, heads\[0\]: an attribute head needs 'attribute'"):
        read_role_map(bad)
    bad.write_text(json.dumps({"heads": [{"layer": 9, "head": 0, "role": "boss"}]}))
    with pytest.raises(RoleMapError, match="role 'boss' is not one of"):
        read_role_map(bad)
    rm = role_map([GEN] * 4, layers=(2,))
    with pytest.raises(RoleMapError, match=r"synthetic.json has no role for layer 1 head\(s\) \[0, 1, 2, 3\].*--layers"):
        role_masks(rm, [1, 2], 4, ATTRS, N_ORIG, "role")


def test_attr_attention_self_blocks_attribute_pairs_but_the_diagonal():
    n_orig = 3
    for role in (HeadRole(9, 0, "generalization"), HeadRole(9, 1, "attribute", "shape"), HeadRole(9, 2, "mixed")):
        open_ = head_blocked(role, ATTRS, n_orig, "role", "open")
        own = head_blocked(role, ATTRS, n_orig, "role", "self")
        want = open_.clone()
        want[3:, 3:] = ~torch.eye(3, dtype=torch.bool)
        assert torch.equal(own, want), role
        assert not open_[3:, 3:].any()
    assert not head_blocked(HeadRole(9, 0, "generalization"), ATTRS, n_orig, "none", "self").any()
    with pytest.raises(ValueError, match=r"ATTR_ATTENTION must be one of \('open', 'self'\)"):
        head_blocked(HeadRole(9, 0, "mixed"), ATTRS, n_orig, "role", "closed")


@torch.no_grad()
def test_attr_attention_self_isolates_attribute_tokens_from_each_other(clip):
    """With `self` and every head Mixed, moving one attribute token changes the original tokens'
    outputs but not the other attribute tokens' (they see only themselves and the originals,
    which the moved token reaches only from the next layer on)."""
    rm = role_map([MIX] * 4)
    masks = role_masks(rm, [1], 4, ATTRS, N_ORIG, "role", attr_attention="self")
    g = torch.Generator().manual_seed(9)
    tokens = torch.randn(2, 3, 64, generator=g)

    def outputs(t):
        hooks = TowerHooks(before_block=token_hook(t, range(2), N_ORIG, 0.9), head_masks={0: masks[0]}, capture_heads={0})
        return clip.forward_image(images(), hooks).head_outputs[0]

    base = outputs(tokens)
    moved = tokens.clone()
    moved[0, 0] = torch.randn(64, generator=g)
    after = outputs(moved)
    torch.testing.assert_close(after[:, N_ORIG + 1:], base[:, N_ORIG + 1:], rtol=0, atol=0)
    assert (after[:, :N_ORIG] - base[:, :N_ORIG]).abs().max() > 1e-4


def test_first_masked_layer_j_plus_1_leaves_the_insertion_layer_open(clip):
    """FIRST_MASKED_LAYER J+1: masks only on the layers after the insertion layer; the model
    places a shorter mask stack on the last layers."""
    rm = role_map([GEN] * 4)
    masks = role_masks(rm, [2], 4, ATTRS, N_ORIG, "role")
    s = DeARSettings(attributes=ATTRS, n_text=2, first_layer=0, text_first_layer=0, rep_dim=32)
    model = DeARCLIP(clip, ["a photo of a cat."], s, masks)
    assert set(model.vision_hooks().head_masks) == {1}
    with pytest.raises(ValueError, match="3 layer masks for 2 deep layers"):
        DeARCLIP(clip, ["a photo of a cat."], s, masks.expand(3, -1, -1, -1))

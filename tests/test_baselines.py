"""IVLP, MaPLe, PromptSRC and CoCoOp against hand-written reference computations: prompt
token layout, per-layer prompt replacement, disabled prompts = plain CLIP, PromptSRC's
loss terms and GPA, CoCoOp's per-image prompts, parameter counts."""
import math

import pytest
import torch
import torch.nn.functional as F

from backbone import load_clip
from trainers.cocoop import CoCoOpCLIP, CoCoOpPrompts
from trainers.coop import PromptLearner
from trainers.deep_prompts import ClassPrompts, DeepPromptCLIP, IndependentPrompts, count_learnable, text_hooks, vision_hooks
from trainers.maple import MultiModalPrompts
from trainers.promptsrc import (
    PromptAggregator, PromptSRCCLIP, gpa_weights, promptsrc_losses, teacher_text_features,
)

CLASSES = ["red_circle", "sky blue square", "cat"]


@pytest.fixture(scope="module")
def clip():
    """tiny-attr at random init: 4 text / 6 vision layers, widths 128 / 192, embed 128."""
    torch.manual_seed(0)
    return load_clip("tiny-attr", pretrained=False)


@pytest.fixture(scope="module")
def images(clip):
    torch.manual_seed(1)
    return torch.randn(2, 3, clip.image_size, clip.image_size)


def word(clip, token_id):
    return clip.embed_tokens(torch.tensor([[token_id]]))[0, 0]


# ---- hand-written references on open_clip's modules ----------------------------------------
def reference_text(clip, prompts, eot, deep):
    """The official TextEncoder + ResidualAttentionBlock_IVLP/MaPLe loop, untruncated."""
    m = clip.model
    x = prompts + m.positional_embedding
    mask = torch.full((x.shape[1], x.shape[1]), float("-inf")).triu(1)
    for i, block in enumerate(m.transformer.resblocks):
        if 1 <= i <= len(deep):
            n = deep[i - 1].shape[0]
            x = torch.cat([x[:, :1], deep[i - 1].expand(x.shape[0], -1, -1), x[:, 1 + n:]], dim=1)
        x = block(x, attn_mask=mask)
    return m.ln_final(x)[torch.arange(x.shape[0]), eot] @ m.text_projection


def reference_image(clip, images, prompts):
    """The official VisionTransformer (VPT-deep/MaPLe) forward."""
    v = clip.model.visual
    x = v.conv1(images).flatten(2).transpose(1, 2)
    x = torch.cat([v.class_embedding.expand(x.shape[0], 1, -1), x], dim=1) + v.positional_embedding
    if prompts:
        x = torch.cat([x, prompts[0].expand(x.shape[0], -1, -1)], dim=1)
    x = v.ln_pre(x)
    for i, block in enumerate(v.transformer.resblocks):
        if 1 <= i < len(prompts):
            n = prompts[i].shape[0]
            x = torch.cat([x[:, :-n], prompts[i].expand(x.shape[0], -1, -1)], dim=1)
        x = block(x)
    return v.ln_post(x[:, 0]) @ v.proj


# ---- prompt text layout ----------------------------------------------------------------------
def test_n_ctx_smaller_than_ctx_init_keeps_the_rest_of_the_phrase(clip):
    prompts = ClassPrompts(clip, CLASSES, 2, "a photo of a")
    tok = clip.tokenizer
    assert prompts.texts[0] == "a photo of a red circle."
    assert torch.equal(prompts.ctx, clip.embed_tokens(clip.tokenize(["a photo"]))[0, 1:3])
    out = prompts()
    for i, name in enumerate(CLASSES):
        ids = tok.encode("of a") + tok.encode(name.replace("_", " ")) + tok.encode(".")
        layout = [word(clip, tok.sot_token_id), prompts.ctx[0], prompts.ctx[1]]
        layout += [word(clip, t) for t in ids] + [word(clip, tok.eot_token_id)]
        assert int(prompts.eot_index[i]) == len(layout) - 1 == 3 + len(ids)
        for pos, want in enumerate(layout):
            assert torch.equal(out[i, pos], want), (name, pos)


def test_n_ctx_beyond_ctx_init_falls_back_to_random_placeholders(clip):
    prompts = ClassPrompts(clip, CLASSES, 6, "a photo of a")
    assert prompts.prompt_prefix == "X X X X X X" and prompts.texts[2] == "X X X X X X cat."
    assert prompts.ctx.shape == (6, clip.text_width)


# ---- per-layer replacement -------------------------------------------------------------------
@pytest.mark.parametrize("depth", [1, 4, 9, 12])
def test_text_hooks_replace_positions_1_to_n_up_to_depth_only(depth):
    n, layers, width = 3, 12, 8
    deep = [torch.full((n, width), float(i + 1)) for i in range(depth - 1)]
    hooks = text_hooks(deep)
    x = torch.randn(2, 10, width)
    for i in range(layers):
        y = x if hooks.before_block is None else hooks.before_block(i, x)
        if 1 <= i < depth:
            assert torch.equal(y[:, 1:1 + n], deep[i - 1].expand(2, -1, -1)), i
            assert torch.equal(y[:, :1], x[:, :1]) and torch.equal(y[:, 1 + n:], x[:, 1 + n:])
        else:
            assert torch.equal(y, x), i


@pytest.mark.parametrize("depth", [0, 1, 4, 9, 12])
def test_vision_hooks_append_then_replace_last_n_up_to_depth_only(depth):
    n, layers, width, patches = 2, 12, 8, 5
    prompts = [torch.full((n, width), float(i + 1)) for i in range(depth)]
    hooks = vision_hooks(prompts)
    x = torch.randn(2, 1 + patches, width)
    if depth == 0:
        assert not hooks.active
        return
    embedded = hooks.on_embed(x)
    assert embedded.shape[1] == 1 + patches + n and torch.equal(embedded[:, :1 + patches], x)
    assert torch.equal(embedded[:, -n:], prompts[0].expand(2, -1, -1))
    h = torch.randn(2, 1 + patches + n, width)
    for i in range(layers):
        y = hooks.before_block(i, h)
        if 1 <= i < depth:
            assert torch.equal(y[:, -n:], prompts[i].expand(2, -1, -1)) and torch.equal(y[:, :-n], h[:, :-n]), i
        else:
            assert torch.equal(y, h), i


@pytest.mark.parametrize("depth_text,depth_vision", [(1, 0), (3, 4), (4, 6)])
def test_ivlp_features_equal_reference_forward(clip, images, depth_text, depth_vision):
    torch.manual_seed(2)
    learner = IndependentPrompts(clip, CLASSES, 2, 3, depth_text, depth_vision, "a photo of a")
    model = DeepPromptCLIP(clip, learner)
    with torch.no_grad():
        text = model.text_features()
        ref_text = reference_text(clip, learner.text(), learner.text.eot_index, list(learner.text_prompts))
        image = model.image_features(images)
        ref_image = reference_image(clip, images, list(learner.vision_prompts))
    assert torch.allclose(text, ref_text, atol=1e-5, rtol=1e-5)
    assert torch.allclose(image, ref_image, atol=1e-5, rtol=1e-5)
    assert len(learner.text_prompts) == depth_text - 1 and len(learner.vision_prompts) == depth_vision


def test_maple_features_equal_reference_forward_with_coupled_prompts(clip, images):
    torch.manual_seed(3)
    learner = MultiModalPrompts(clip, CLASSES, 2, "a photo of a", 3)
    for proj in learner.deep_proj:  # distinct maps, so a mixed-up layer index cannot pass
        torch.nn.init.normal_(proj.weight, std=0.1)
    model = DeepPromptCLIP(clip, learner)
    vision = [learner.proj(learner.text.ctx)]
    vision += [learner.deep_proj[k](learner.text_prompts[k]) for k in range(2)]
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(learner.vision(), vision)) and len(learner.vision()) == 3
        text = model.text_features()
        ref_text = reference_text(clip, learner.text(), learner.text.eot_index, list(learner.text_prompts))
        image = model.image_features(images)
        ref_image = reference_image(clip, images, vision)
    assert torch.allclose(text, ref_text, atol=1e-5, rtol=1e-5)
    assert torch.allclose(image, ref_image, atol=1e-5, rtol=1e-5)


def test_maple_deep_projections_start_identical_as_official():
    clip = load_clip("tiny-test", pretrained=False)
    learner = MultiModalPrompts(clip, CLASSES, 2, "a photo of a", 2)
    assert len(learner.deep_proj) == 1 and learner.proj.in_features == clip.text_width
    deeper = MultiModalPrompts(load_clip("tiny-attr", pretrained=False), CLASSES, 2, "a photo of a", 4)
    weights = [p.weight for p in deeper.deep_proj]
    assert len(weights) == 3 and all(torch.equal(w, weights[0]) for w in weights)
    assert weights[0].shape == (192, 128)  # vision_width x text_width, read from the model


def test_disabled_prompts_equal_the_plain_backbone(clip, images):
    """Text prompts = the CTX_INIT words at depth 1, no vision prompts: plain CLIP features."""
    ivlp = DeepPromptCLIP(clip, IndependentPrompts(clip, CLASSES, 4, 0, 1, 0, "a photo of a"))
    maple = DeepPromptCLIP(clip, MultiModalPrompts(clip, CLASSES, 4, "a photo of a", 1))
    texts = [f"a photo of a {c.replace('_', ' ')}." for c in CLASSES]
    with torch.no_grad():
        plain_text = clip.encode_text(clip.tokenize(texts))
        assert torch.equal(ivlp.text_features(), plain_text)
        assert torch.equal(maple.text_features(), plain_text)
        assert torch.equal(ivlp.image_features(images), clip.encode_image(images))


# ---- PromptSRC ---------------------------------------------------------------------------------
def test_promptsrc_teacher_text_is_the_template_average(clip):
    templates = ("a photo of a {}.", "art of the {}.", "a {} in a video game.")
    got = teacher_text_features(clip, CLASSES, templates)
    names = [c.replace("_", " ") for c in CLASSES]
    with torch.no_grad():
        per = [[clip.encode_text(clip.tokenize([t.format(n)]))[0] for t in templates] for n in names]
    want = torch.stack([sum(p) / len(p) for p in per])
    assert torch.allclose(got, want, atol=1e-5)


def test_promptsrc_image_teacher_is_the_shared_backbone_without_prompts(clip, images):
    learner = IndependentPrompts(clip, CLASSES, 4, 4, 2, 2, "a photo of a")
    templates = ("a photo of a {}.", "a sketch of the {}.")
    model = PromptSRCCLIP(clip, learner, CLASSES, templates)
    assert model.teacher_text is None  # encoded at the first training step, not for eval-only runs
    teacher = teacher_text_features(clip, CLASSES, templates)
    assert model.clip is clip and sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in clip.parameters()) + count_learnable(learner)  # no second CLIP
    out = model.train_outputs(images)
    with torch.no_grad():
        plain = F.normalize(clip.encode_image(images), dim=-1)
    assert torch.equal(out.teacher_image, plain) and torch.allclose(out.teacher_text, F.normalize(teacher, dim=-1))
    assert torch.allclose(out.teacher_logits, clip.logit_scale.exp() * plain @ F.normalize(teacher, dim=-1).t())
    assert not out.teacher_image.requires_grad and out.logits.requires_grad


def test_promptsrc_loss_terms_match_a_direct_computation():
    torch.manual_seed(4)
    B, C, E = 3, 5, 7
    norm = lambda t: t / t.norm(dim=-1, keepdim=True)  # noqa: E731
    text, teacher_text = norm(torch.randn(C, E)), norm(torch.randn(C, E))
    image, teacher_image = norm(torch.randn(B, E)), norm(torch.randn(B, E))
    logits, teacher_logits = 10 * image @ text.t(), 10 * teacher_image @ teacher_text.t()
    labels = torch.tensor([0, 3, 4])
    from trainers.promptsrc import SRCOutputs
    terms = promptsrc_losses(SRCOutputs(logits, text, image, teacher_text, teacher_image, teacher_logits), labels, 25, 10)

    p_s, p_t = logits.softmax(1), teacher_logits.softmax(1)
    ce = -sum(math.log(p_s[b, labels[b]]) for b in range(B)) / B
    l1_text = sum(abs(float(text[c, e] - teacher_text[c, e])) for c in range(C) for e in range(E)) / (C * E)
    l1_image = sum(abs(float(image[b, e] - teacher_image[b, e])) for b in range(B) for e in range(E)) / (B * E)
    kl = sum(float(p_t[b, c] * (p_t[b, c].log() - p_s[b, c].log())) for b in range(B) for c in range(C)) / (B * C)
    assert terms["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert terms["text"].item() == pytest.approx(25 * l1_text, rel=1e-5)
    assert terms["image"].item() == pytest.approx(10 * l1_image, rel=1e-5)
    assert terms["kl"].item() == pytest.approx(kl, rel=1e-4)
    assert terms["total"].item() == pytest.approx(ce + 25 * l1_text + 10 * l1_image + kl, rel=1e-5)


@pytest.mark.parametrize("epochs,mean,std", [(20, 15, 1), (50, 30, 30), (50, 45, 5), (2, 6, 10)])
def test_gpa_weights_are_the_normalised_gaussian(epochs, mean, std):
    w = gpa_weights(epochs, mean, std)
    g = [math.exp(-((e - mean) ** 2) / (2 * std ** 2)) / (std * math.sqrt(2 * math.pi)) for e in range(1, epochs + 1)]
    assert sum(w) == pytest.approx(1.0, abs=1e-12)
    assert w == pytest.approx([v / sum(g) for v in g], rel=1e-12)


def test_gpa_aggregate_is_the_weighted_sum_of_learnable_tensors():
    torch.manual_seed(5)
    weights = gpa_weights(4, 3, 1)
    states = [{"a": torch.randn(2, 3), "b.0": torch.randn(4)} for _ in range(4)]
    agg = PromptAggregator(weights)
    for e, s in enumerate(states):
        agg.add(e, s)
    out = agg.aggregate(states[0])
    for k in ("a", "b.0"):
        want = sum(w * s[k] for w, s in zip(weights, states))
        assert torch.allclose(out[k], want, atol=1e-6)
    with pytest.raises(RuntimeError, match="aggregated 4 epochs"):
        agg.add(2, states[0])


# ---- CoCoOp ------------------------------------------------------------------------------------
def test_cocoop_prompts_are_per_image_and_match_a_loop(clip, images):
    torch.manual_seed(6)
    learner = CoCoOpPrompts(clip, CLASSES, 16, "a_photo of a")
    assert learner.text.n_ctx == 4 and learner.meta_net.linear1.in_features == clip.embed_dim
    assert learner.meta_net.linear1.out_features == clip.embed_dim // 16
    model = CoCoOpCLIP(clip, learner)
    with torch.no_grad():
        logits = model(images)
        image = F.normalize(clip.encode_image(images), dim=-1)
        for b in range(images.shape[0]):
            bias = learner.meta_net(image[b:b + 1])[0]
            ctx = learner.text.ctx + bias
            prompts = torch.cat([learner.text.token_prefix, ctx.expand(len(CLASSES), -1, -1), learner.text.token_suffix], 1)
            text = F.normalize(reference_text(clip, prompts, learner.text.eot_index, []), dim=-1)
            assert torch.allclose(logits[b], clip.logit_scale.exp() * image[b] @ text.t(), atol=1e-4)


def test_cocoop_with_zero_meta_net_equals_plain_clip_on_the_init_words(clip, images):
    learner = CoCoOpPrompts(clip, CLASSES, 16, "a photo of a")
    torch.nn.init.zeros_(learner.meta_net.linear2.weight)
    torch.nn.init.zeros_(learner.meta_net.linear2.bias)
    texts = [f"a photo of a {c.replace('_', ' ')}." for c in CLASSES]
    with torch.no_grad():
        logits = CoCoOpCLIP(clip, learner)(images)
        text = F.normalize(clip.encode_text(clip.tokenize(texts)), dim=-1)
        image = F.normalize(clip.encode_image(images), dim=-1)
    assert torch.allclose(logits, (clip.logit_scale.exp() * image @ text.t()).float(), atol=1e-5)


# ---- precision -----------------------------------------------------------------------------------
def test_every_method_trains_a_step_under_amp():
    """amp on CPU is bf16 autocast over fp32 weights; the originals crash here."""
    from backbone import autocast
    clip = load_clip("tiny-test", pretrained=False, precision="amp")
    images, labels = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    models = {
        "IVLP": DeepPromptCLIP(clip, IndependentPrompts(clip, CLASSES, 2, 2, 2, 2, "a photo of a")),
        "MaPLe": DeepPromptCLIP(clip, MultiModalPrompts(clip, CLASSES, 2, "a photo of a", 2)),
        "CoCoOp": CoCoOpCLIP(clip, CoCoOpPrompts(clip, CLASSES, 4, "")),
    }
    src = PromptSRCCLIP(clip, IndependentPrompts(clip, CLASSES, 2, 2, 2, 2, ""), CLASSES, ("a photo of a {}.",))
    for name, model in [*models.items(), ("PromptSRC", src)]:
        with autocast("amp", "cpu", "bf16"):  # the bf16 path on any CPU (auto would run fp32 without AMX)
            if name == "PromptSRC":
                loss = promptsrc_losses(model.train_outputs(images), labels, 25, 10)["total"]
            else:
                loss = F.cross_entropy(model(images), labels)
        loss.backward()
        grads = [p.grad for p in model.prompt_learner.parameters()]
        assert all(g is not None and torch.isfinite(g).all() and g.dtype == torch.float32 for g in grads), name


# ---- parameter counts on ViT-B/16 ---------------------------------------------------------------
def test_learnable_parameter_counts_on_vit_b16():
    clip = load_clip("ViT-B/16", pretrained=False)
    t, v, e = clip.text_width, clip.vision_width, clip.embed_dim
    counts = {
        "CoOp 16 ctx": PromptLearner(clip, ["a", "b"], 16, "", False, "end"),
        "MaPLe 2 ctx, depth 9": MultiModalPrompts(clip, ["a", "b"], 2, "a photo of a", 9),
        "IVLP/PromptSRC 4+4 ctx, depth 9": IndependentPrompts(clip, ["a", "b"], 4, 4, 9, 9, "a photo of a"),
        "IVLP 2+2 ctx, depth 12": IndependentPrompts(clip, ["a", "b"], 2, 2, 12, 12, "a photo of a"),
        "CoCoOp 4 ctx (ctxv1)": CoCoOpPrompts(clip, ["a", "b"], 16, "a photo of a"),
        "CoCoOp 16 ctx": CoCoOpPrompts(clip, ["a", "b"], 16, ""),
    }
    counts = {k: count_learnable(m) for k, m in counts.items()}
    for k, n in counts.items():
        print(f"{k}: {n:,} learnable parameters")
    assert (t, v, e) == (512, 768, 512)
    assert counts["CoOp 16 ctx"] == 16 * t == 8_192
    assert counts["MaPLe 2 ctx, depth 9"] == 9 * (t * v + v) + 9 * 2 * t == 3_555_072
    assert counts["IVLP/PromptSRC 4+4 ctx, depth 9"] == 9 * 4 * (t + v) == 46_080
    assert counts["IVLP 2+2 ctx, depth 12"] == 12 * 2 * (t + v) == 30_720
    meta = e * (e // 16) + e // 16 + (e // 16) * t + t
    assert counts["CoCoOp 4 ctx (ctxv1)"] == 4 * t + meta == 35_360
    assert counts["CoCoOp 16 ctx"] == 16 * t + meta == 41_504
    assert not any(p.requires_grad for p in clip.parameters())

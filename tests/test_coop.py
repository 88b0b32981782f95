"""CoOp's prompt assembly, parameter count and evaluation-time text caching."""
import pytest
import torch

from backbone import load_clip
from trainers.coop import POSITIONS, CoOpCLIP, PromptLearner

CLASSES = ["red_circle", "sky blue square", "cat"]


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return load_clip("tiny-test", pretrained=False)


def coop_loop(prefix, ctx, suffix, name_lens, position):
    """CoOp's original per-class assembly, as a reference."""
    rows = []
    n_ctx = ctx.shape[1]
    for i, name_len in enumerate(name_lens):
        p, s, c = prefix[i:i + 1], suffix[i:i + 1], ctx[i:i + 1]
        if position == "end":
            rows.append(torch.cat([p, c, s], 1))
        elif position == "middle":
            h = n_ctx // 2
            rows.append(torch.cat([p, c[:, :h], s[:, :name_len], c[:, h:], s[:, name_len:]], 1))
        else:
            rows.append(torch.cat([p, s[:, :name_len], c, s[:, name_len:]], 1))
    return torch.cat(rows, 0)


@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("csc", [False, True])
def test_assembly_equals_coop_loop(clip, position, csc):
    learner = PromptLearner(clip, CLASSES, 4, "", csc, position)
    ctx = learner.ctx if csc else learner.ctx.expand(len(CLASSES), -1, -1)
    name_lens = [len(clip.tokenizer.encode(n.replace("_", " "))) for n in CLASSES]
    expected = coop_loop(learner.token_prefix, ctx, learner.token_suffix, name_lens, position)
    assert torch.equal(learner(), expected)


@pytest.mark.parametrize("position", POSITIONS)
def test_token_positions(clip, position):
    n_ctx = 4
    learner = PromptLearner(clip, CLASSES, n_ctx, "", False, position)
    prompts = learner()
    tok = clip.tokenizer
    sos, eot = tok.sot_token_id, tok.eot_token_id
    for i, name in enumerate(CLASSES):
        name_ids = tok.encode(name.replace("_", " "))
        ctx = [("ctx", k) for k in range(n_ctx)]
        cls = [("tok", t) for t in name_ids]
        body = {"end": ctx + cls, "front": cls + ctx, "middle": ctx[:2] + cls + ctx[2:]}[position]
        layout = [("tok", sos)] + body + [("tok", t) for t in tok.encode(".")] + [("tok", eot)]
        assert int(learner.eot_index[i]) == len(layout) - 1
        for pos, (kind, value) in enumerate(layout):
            want = learner.ctx[value] if kind == "ctx" else clip.embed_tokens(torch.tensor([[value]]))[0, 0]
            assert torch.equal(prompts[i, pos], want), (name, position, pos, kind, value)


@pytest.mark.parametrize("csc", [False, True])
def test_ctx_init_words_give_one_shared_context_whatever_csc_says(clip, csc, capsys):
    """The official CoOp reads CSC only for a random init: with CTX_INIT every class shares the
    context initialised from the words (docs/BASELINES.md)."""
    learner = PromptLearner(clip, CLASSES, 16, "a_photo of a", csc, "end")
    words = clip.embed_tokens(clip.tokenize(["a photo of a"]))[0, 1:5]
    assert learner.n_ctx == 4 and learner.ctx.shape == (4, clip.text_width) and torch.equal(learner.ctx, words)
    assert ("CSC is ignored with CTX_INIT, as in the official CoOp" in capsys.readouterr().out) == csc
    assert learner.eot_index.tolist() == [int(i) for i in clip.eot_index(clip.tokenize(
        [f"a photo of a {c.replace('_', ' ')}." for c in CLASSES]))]


def test_coop_vit_b16_learnable_parameter_count():
    clip = load_clip("ViT-B/16", pretrained=False)
    learner = PromptLearner(clip, ["a", "b"], 16, "", False, "end")
    count = sum(p.numel() for p in learner.parameters() if p.requires_grad)
    print(f"CoOp (16 ctx, ViT-B/16) learnable parameters: {count:,}")
    assert count == 16 * 512 == 8192
    assert not any(p.requires_grad for p in clip.parameters())


def test_cached_text_features_equal_per_batch_encoding(clip):
    model = CoOpCLIP(clip, PromptLearner(clip, CLASSES, 4, "", False, "middle"))
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        plain = model(images)
        with model.cached_text_features():
            cached = model(images)
    assert torch.allclose(plain, cached, atol=1e-5)
    assert model._text_cache is None

"""DeAR end to end on the generated mini dataset with a 2-layer CLIP: base training, learnable-only
checkpoints, evaluation on new classes, fusion modes, loss, parameter counts, config errors."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from backbone import load_clip
from headroles.rolemap import RoleMapError, parse_role_map, read_role_map
from tests.minidata import make_caltech_like
from train import main, parse_args, setup_cfg
from trainers.dear.masks import role_masks
from trainers.dear.model import DeARCLIP, DeAROutput, DeARSettings
from trainers.dear.trainer import DeAR, dear_loss, fused_at_eval, learnable_counts

ROLES = [
    {"role": "attribute", "attribute": "color"}, {"role": "generalization"},
    {"role": "mixed"}, {"role": "attribute", "attribute": "shape"},
]
LEARNABLE_KEYS = {
    "tokens.latent", "attr_proj", "fusion_weights",
    *(f"tokens.to_{t}.{p}" for t in ("vision", "text") for p in ("weight", "bias", "down", "up")),
}


def write_map(path, roles=ROLES, layers=(1, 2)):
    heads = [{"layer": l, "head": h, **r} for l in layers for h, r in enumerate(roles)]
    path.write_text(json.dumps({"backbone": "tiny-test", "heads": heads}))
    return path


def expected_count(vw, tw, embed, attrs, k, v_layers, t_layers, rank, rep):
    """The learnable parameters DeAR should have, from the design (not from the code)."""
    def aligner(width, layers):
        return width * rep + layers * (width + width * rank + rank * rep)
    return max(attrs, k) * rep + aligner(vw, v_layers) + aligner(tw, t_layers) + vw * embed + (1 + attrs)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_caltech_like(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def role_map_file(tmp_path_factory):
    return write_map(tmp_path_factory.mktemp("roles") / "tiny.json")


def argv(root, out, role_map, *extra, sub="base", epochs=2, opts=()):
    return [
        "--root", str(root), "--seed", "1", "--trainer", "DeAR",
        "--dataset-config-file", "configs/datasets/caltech101.yaml",
        "--config-file", "configs/trainers/DeAR/vit_b16.yaml",
        "--output-dir", str(out), *extra,
        "MODEL.BACKBONE.NAME", "tiny-test", "MODEL.BACKBONE.PRETRAINED", "False",
        "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "8",
        "OPTIM.MAX_EPOCH", str(epochs), "DATASET.SUBSAMPLE_CLASSES", sub,
        "TRAINER.DEAR.PREC", "fp32", "TRAINER.DEAR.J", "1", "TRAINER.DEAR.ROLE_MAP", str(role_map), *opts,
    ]


def build(args):
    return DeAR(setup_cfg(parse_args(args)))


def test_base_training_then_new_classes_from_learnable_only_checkpoint(data_root, role_map_file, tmp_path):
    base = tmp_path / "train_base"
    main(argv(data_root, base, role_map_file))
    log = (base / "log.txt").read_text()
    count = expected_count(64, 48, 32, 5, 5, 2, 2, 4, 32)
    assert f"DeAR learnable parameters: {count:,} (" in log
    assert "Evaluation logits: fused paths" in log and "'attribute': 4, 'generalization': 2, 'mixed': 2" in log
    assert json.loads((base / "results.json").read_text())["evaluations"]["test"]["metrics"]["accuracy"] >= 0
    ckpt = torch.load(base / "dear" / "model.pth.tar-2", weights_only=False)
    assert set(ckpt["state_dict"]) == LEARNABLE_KEYS  # nothing of CLIP, nothing class-dependent
    assert sum(v.numel() for v in ckpt["state_dict"].values()) == count
    assert json.loads((base / "role_map.json").read_text()) == json.loads(role_map_file.read_text())

    new = tmp_path / "test_new"
    trainer = build(argv(data_root, new, role_map_file, sub="new"))
    assert trainer.num_classes == 2 and trainer.model.prompt_embeddings.shape[0] == 2
    trainer.load_model(str(base), epoch=2)
    state = dict(trainer.model.named_parameters())
    for key, value in ckpt["state_dict"].items():
        assert torch.equal(state[key], value), key

    main(argv(data_root, new, role_map_file, "--eval-only", "--model-dir", str(base), "--load-epoch", "2", sub="new"))
    log = (new / "log.txt").read_text()
    assert 'Loading weights to dear from' in log and "model.pth.tar-2" in log
    assert json.loads((new / "results.json").read_text())["subsample"] == "new"


def test_evaluation_uses_the_role_map_the_weights_were_trained_with(data_root, role_map_file, tmp_path):
    base = tmp_path / "base"
    main(argv(data_root, base, role_map_file, epochs=1))
    other = write_map(tmp_path / "all_mixed.json", [{"role": "mixed"}] * 4)
    trainer = build(argv(data_root, tmp_path / "new", other, sub="new"))
    assert not trainer.model.masks.isinf().any()
    trainer.load_model(str(base), epoch=1)
    expected = role_masks(parse_role_map(json.loads(role_map_file.read_text()), "x"), [1, 2], 4,
                          list(trainer.cfg.TRAINER.DEAR.ATTRIBUTES), 17, "role")
    assert torch.equal(trainer.model.masks, expected)


def test_mmrl_fusion_scores_by_mmrls_rule(data_root, role_map_file, tmp_path):
    """FUSION mmrl evaluates by MMRL's decoupled-inference rule on TASK (trainers/representation.py)."""
    assert fused_at_eval("learned", "B2N", "new", "DTD") and not fused_at_eval("cls", "FS", "all", "DTD")
    assert fused_at_eval("mmrl", "B2N", "base", "DTD") and not fused_at_eval("mmrl", "B2N", "new", "DTD")
    assert fused_at_eval("mmrl", "FS", "all", "DTD") and fused_at_eval("mmrl", "CD", "all", "ImageNet")
    assert not fused_at_eval("mmrl", "CD", "all", "DTD") and not fused_at_eval("mmrl", "CD", "all", "ImageNetV2")
    trainer = build(argv(data_root, tmp_path / "n", role_map_file, sub="new", opts=("TRAINER.DEAR.FUSION", "mmrl")))
    model = trainer.model
    assert not model.eval_fused
    assert build(argv(data_root, tmp_path / "s", role_map_file, opts=("TRAINER.DEAR.FUSION", "mmrl"))).model.eval_fused
    target = build(argv(data_root, tmp_path / "t", role_map_file, sub="all", opts=("TRAINER.DEAR.FUSION", "mmrl", "TASK", "CD")))
    assert not target.model.eval_fused
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        cls, attr = model.image_features(x)
        paths = model.path_logits(cls, attr, model.text_features())
        torch.testing.assert_close(model(x), paths[:, 0])
        model.eval_fused = True
        alpha = model.fusion_alpha()
        torch.testing.assert_close(model(x), (alpha[None, :, None] * paths).sum(1))
        torch.testing.assert_close(alpha, torch.tensor([0.7] + [0.06] * 5))


def test_ablation_switches_change_what_learns(data_root, role_map_file, tmp_path):
    no_tokens = build(argv(data_root, tmp_path / "a", "", opts=("TRAINER.DEAR.ATTR_TOKENS", "False")))
    assert no_tokens.model.masks is None and not no_tokens.model.eval_fused
    assert learnable_counts(no_tokens.model) == {"tokens.latent": 5 * 32, "tokens.to_text": 48 * 32 + 2 * (48 + 48 * 4 + 4 * 32)}
    cls_only = build(argv(data_root, tmp_path / "b", role_map_file, opts=("TRAINER.DEAR.FUSION", "cls")))
    assert set(learnable_counts(cls_only.model)) == {"tokens.latent", "tokens.to_vision", "tokens.to_text"}
    gen_only = build(argv(data_root, tmp_path / "c", role_map_file, opts=("TRAINER.DEAR.MASK", "generalization")))
    assert gen_only.model.masks[:, [0, 2, 3]].isinf().sum() == 0 and gen_only.model.masks[:, 1].isinf().any()
    lora = build(argv(data_root, tmp_path / "d", role_map_file, opts=("TRAINER.DEAR.ATTR_PROJ_RANK", "2", "TRAINER.DEAR.K", "3")))
    counts = learnable_counts(lora.model)
    assert counts["attr_proj_down"] == 64 * 2 and counts["attr_proj_up"] == 2 * 32 and "attr_proj" not in counts
    assert counts["tokens.latent"] == 5 * 32  # max(attributes, K) rows
    assert lora.model.text_features().shape == (3, 32)


def test_config_errors_say_how_to_fix(data_root, tmp_path):
    with pytest.raises(RoleMapError, match="TRAINER.DEAR.ROLE_MAP is empty: make one with `python tools/head_roles.py"):
        build(argv(data_root, tmp_path / "e", ""))
    with pytest.raises(RoleMapError, match=r"No role map at .*missing.json: make one with"):
        build(argv(data_root, tmp_path / "e", tmp_path / "missing.json"))
    with pytest.raises(ValueError, match=r"TRAINER.DEAR.FUSION must be one of \('learned', 'cls', 'mmrl'\)"):
        build(argv(data_root, tmp_path / "e", "x.json", opts=("TRAINER.DEAR.FUSION", "avg")))
    with pytest.raises(ValueError, match="ATTR_TOKENS False with K 0 leaves nothing to learn"):
        build(argv(data_root, tmp_path / "e", "", opts=("TRAINER.DEAR.ATTR_TOKENS", "False", "TRAINER.DEAR.K", "0")))
    with pytest.raises(ValueError, match=r"TRAINER.DEAR.J=3 must be a 1-based vision layer in 1..2"):
        build(argv(data_root, tmp_path / "e", "", opts=("TRAINER.DEAR.J", "3", "TRAINER.DEAR.MASK", "none")))


def test_loss_matches_its_definition():
    g = torch.Generator().manual_seed(0)
    paths, cls, text = torch.randn(4, 6, 3, generator=g), torch.randn(4, 8, generator=g), torch.randn(3, 8, generator=g)
    frozen_image, frozen_text, labels = torch.randn(4, 8, generator=g), torch.randn(3, 8, generator=g), torch.tensor([0, 2, 1, 1])
    alpha = torch.softmax(torch.randn(6, generator=g), 0)
    fused = (alpha[None, :, None] * paths).sum(1)
    out = dear_loss(DeAROutput(paths, fused, cls, text), labels, frozen_image, frozen_text, alpha[0], 0.5, 0.2)
    ce = -sum(F.log_softmax(fused[i], 0)[labels[i]] for i in range(4)) / 4
    cos = lambda a, b: (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))  # noqa: E731
    reg = (1 - cos(cls, frozen_image).mean()) + (1 - cos(text, frozen_text).mean())
    torch.testing.assert_close(out["loss"], ce + 0.5 * reg - 0.2 * math.log(alpha[0].item()))


def test_vit_b16_learnable_parameter_count(tmp_path):
    clip = load_clip("ViT-B/16", pretrained=False)
    roles = [{"role": "generalization"}] * 12
    rm = parse_role_map({"heads": [{"layer": l, "head": h, **r} for l in range(9, 13) for h, r in enumerate(roles)]}, "m")
    attrs = ("color", "shape", "texture", "object", "position")
    masks = role_masks(rm, [9, 10, 11, 12], 12, attrs, 1 + clip.num_patches, "role")
    s = DeARSettings(attributes=attrs, first_layer=8, text_first_layer=8, rep_dim=clip.embed_dim)
    model = DeARCLIP(clip, ["a photo of a cat."], s, masks)
    total = sum(learnable_counts(model).values())
    print(f"DeAR (ViT-B/16, 5 attributes, K 5, layers 9-12) learnable parameters: {total:,}")
    assert total == expected_count(768, 512, 512, 5, 5, 4, 4, 4, 512) == 1_093_126
    assert not any(p.requires_grad for p in clip.parameters())


def test_auto_role_map_is_computed_once_and_cached(data_root, tmp_path, capsys):
    opts = ("TRAINER.DEAR.AUTO_DIR", str(tmp_path / "cache"), "TRAINER.DEAR.AUTO_N_TEXTS", "4")
    first = build(argv(data_root, tmp_path / "a", "auto", opts=opts))
    cached = sorted((tmp_path / "cache").glob("*.json"))
    assert [p.name.split("__")[:2] for p in cached] == [["tiny-test", "Caltech101"]]
    assert cached[0].with_suffix(".png").is_file()
    payload = json.loads(cached[0].read_text())
    assert payload["layers"] == [1, 2] and payload["images"] == 12 and len(payload["heads"]) == 8
    assert all(len(h["top_texts"]) <= 4 for h in payload["heads"])
    assert first.role_map.counts() == {r: sum(h["role"] == r for h in payload["heads"]) for r in first.role_map.counts()}
    assert "running it on the training images once" in capsys.readouterr().out
    second = build(argv(data_root, tmp_path / "b", "auto", opts=opts))
    assert "using the cached analysis" in capsys.readouterr().out
    assert (tmp_path / "b" / "role_map.json").read_text() == cached[0].read_text()
    assert torch.equal(first.model.masks, second.model.masks)


def test_tiny_attr_config_role_map_covers_its_deep_layers():
    import yaml
    c = yaml.safe_load(open("configs/trainers/DeAR/tiny_ep10_batch4.yaml"))["TRAINER"]["DEAR"]
    rm = read_role_map(c["ROLE_MAP"])
    arch = json.load(open("backbone/model_configs/tiny-attr.json"))["vision_cfg"]
    layers, heads = arch["layers"], arch["width"] // arch["head_width"]
    n_orig = 1 + (arch["image_size"] // arch["patch_size"]) ** 2
    masks = role_masks(rm, list(range(c["J"], layers + 1)), heads, c["ATTRIBUTES"], n_orig, c["MASK"])
    length = n_orig + len(c["ATTRIBUTES"])
    assert masks.shape == (layers - c["J"] + 1, heads, length, length)
    assert {h.attribute for h in rm.heads if h.role == "attribute"} <= set(c["ATTRIBUTES"])

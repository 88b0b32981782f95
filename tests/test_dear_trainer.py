"""DeAR end to end on the generated mini dataset with a 2-layer CLIP: base training, learnable-only
checkpoints, evaluation on new classes, fusion modes, the training-time wiring (loss terms,
gradients), parameter counts, config errors, where role maps come from (file, global, auto)."""
import json
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from backbone import load_clip
from engine.cache import files_digest
from engine.errors import ConfigError, DataError, RunMismatchError
from headroles.rolemap import RoleMapError, parse_role_map, read_role_map
from tests.minidata import make_caltech_like
from tests.replica import IMAGENET_SAMPLE, Images, imagenet_tree
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


def argv(root, out, role_map, *extra, sub="base", epochs=2, opts=(), seed=1, dataset="caltech101"):
    return [
        "--root", str(root), "--seed", str(seed), "--trainer", "DeAR",
        "--dataset-config-file", f"configs/datasets/{dataset}.yaml",
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
    results = json.loads((new / "results.json").read_text())
    assert results["subsample"] == "new"
    # the reported accuracy is that of the loaded weights' fused logits on the new classes' test images
    trainer.model.eval()
    with torch.no_grad():
        hits = [(trainer.model(b["img"]).argmax(1) == b["label"]) for b in trainer.test_loader]
    hits = torch.cat(hits)
    assert len(hits) == 2 * 3
    assert results["evaluations"]["test"]["metrics"]["accuracy"] == pytest.approx(100 * hits.float().mean().item())


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
    later = build(argv(data_root, tmp_path / "f", role_map_file, opts=("TRAINER.DEAR.FIRST_MASKED_LAYER", "J+1")))
    assert later.model.masks.shape[0] == 1 and set(later.model.vision_hooks().head_masks) == {1}  # layer 2 only
    own = build(argv(data_root, tmp_path / "g", role_map_file, opts=("TRAINER.DEAR.ATTR_ATTENTION", "self")))
    attr_pairs = own.model.masks[..., 17:, 17:]
    assert torch.equal(attr_pairs.isinf(), ~torch.eye(5, dtype=torch.bool).expand_as(attr_pairs))
    assert not gen_only.model.masks[..., 17:, 17:].isinf().any()  # default: open


def test_config_errors_say_how_to_fix(data_root, tmp_path):
    with pytest.raises(ConfigError, match="TRAINER.DEAR.ROLE_MAP is empty: make one with `python tools/head_roles.py"):
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


# ---- training-time wiring ------------------------------------------------------------------
@pytest.fixture()
def wired(data_root, tmp_path, monkeypatch):
    """A built trainer with non-trivial learnable state (distinct fusion weights, non-zero low-rank
    residuals) whose update step only back-propagates, so a step's losses and gradients can be
    checked against a reference computed from the model's parts."""
    roles = [{"role": "mixed"}, {"role": "generalization"}, {"role": "attribute", "attribute": "color"}, {"role": "mixed"}]
    trainer = build(argv(data_root, tmp_path / "w", write_map(tmp_path / "m.json", roles)))
    model = trainer.model
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        model.fusion_weights.copy_(3 * torch.randn(6, generator=g))
        for name, p in model.named_parameters():
            if name.endswith(".up"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    monkeypatch.setattr(trainer, "model_backward_and_update", lambda loss, names=None: loss.backward())
    x = torch.randn(4, 3, 32, 32, generator=g)
    y = torch.tensor([0, 2, 1, 0])
    return trainer, x, y


def reference_losses(model, clip, x, y):
    """DeAR's loss from its definition, with every part computed separately."""
    with torch.no_grad():
        out = model.forward_train(x)
        cls, attr = model.image_features(x)
        text = model.text_features()
        alpha = torch.softmax(model.fusion_weights, 0)
        feats = torch.cat([cls[:, None], attr], 1)
        assert model.settings.logit_scale == 100.0  # vit_b16.yaml: MMRL++'s fixed scale
        scale = 100.0
        per_path = [scale * F.normalize(feats[:, p], dim=-1) @ F.normalize(text, dim=-1).t() for p in range(6)]
        fused = sum(a * logits for a, logits in zip(alpha, per_path))
        frozen = clip.encode_image(x)  # frozen CLIP, the very same (augmented) images
    return {
        "ce": F.cross_entropy(fused, y).item(),
        "reg_image": (1 - F.cosine_similarity(cls, frozen, dim=-1)).mean().item(),
        "reg_text": (1 - F.cosine_similarity(text, model.frozen_text, dim=-1)).mean().item(),
        "fusion": -math.log(alpha[0].item()),
        "cls_only_ce": F.cross_entropy(per_path[0], y).item(),
    }, out


def test_training_ce_is_on_the_alpha_weighted_fusion_of_every_path(wired):
    trainer, x, y = wired
    ref, out = reference_losses(trainer.model, trainer.model.clip, x, y)
    summary = trainer.forward_backward({"img": x, "label": y})
    assert summary["ce"] == pytest.approx(ref["ce"], rel=1e-5)
    assert abs(ref["ce"] - ref["cls_only_ce"]) > 1e-2  # the check can tell the fused CE from the CLS path's
    assert (out.logits - out.path_logits.mean(1)).abs().max() > 1e-2  # alpha-weighted, not a plain average


def test_fusion_loss_regularises_alpha_cls(wired):
    trainer, x, y = wired
    ref, _ = reference_losses(trainer.model, trainer.model.clip, x, y)
    alpha = torch.softmax(trainer.model.fusion_weights.detach(), 0)
    assert alpha[0] != alpha.max() or alpha[0] != alpha.min()  # alpha_cls is not interchangeable with the others
    summary = trainer.forward_backward({"img": x, "label": y})
    assert summary["fusion"] == pytest.approx(ref["fusion"], rel=1e-6)
    assert summary["alpha_cls"] == pytest.approx(alpha[0].item(), rel=1e-6)
    c = trainer.cfg.TRAINER.DEAR
    total = summary["ce"] + c.LAMBDA_REG * (summary["reg_image"] + summary["reg_text"]) + c.LAMBDA_FUSION * summary["fusion"]
    assert summary["loss"] == pytest.approx(total, rel=1e-5)


def test_regulariser_compares_f_cls_with_frozen_clip_on_the_same_images(wired):
    trainer, x, y = wired
    ref, _ = reference_losses(trainer.model, trainer.model.clip, x, y)
    summary = trainer.forward_backward({"img": x, "label": y})
    assert summary["reg_image"] == pytest.approx(ref["reg_image"], rel=1e-4)
    assert summary["reg_text"] == pytest.approx(ref["reg_text"], rel=1e-4)
    assert ref["reg_image"] > 1e-4  # mixed heads let the tokens move f_cls away from frozen CLIP's


def test_gradients_reach_every_learnable_tensor_and_nothing_else(wired):
    trainer, x, y = wired
    model = trainer.model
    trainer.forward_backward({"img": x, "label": y})
    learnable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert learnable == LEARNABLE_KEYS
    for name, p in model.named_parameters():
        if name in learnable:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    assert not any(p.requires_grad for p in model.clip.parameters())
    optimised = {id(p) for group in trainer._optims["dear"].param_groups for p in group["params"]}
    assert optimised == {id(p) for n, p in model.named_parameters() if n in learnable}


def test_invalid_json_role_map_names_file_line_and_fix(data_root, tmp_path):
    broken = tmp_path / "roles.json"
    broken.write_text('{"heads": [\n  {"layer": 1, "head": 0, "role": "mixed"}\n  {"layer": 1}\n]}\n')
    with pytest.raises(DataError, match=r".*roles.json is not valid JSON: Expecting ',' delimiter at line 3, column 3\. "
                                        r"Fix that line \(a hand-edited map\), or delete the file and make one with"):
        build(argv(data_root, tmp_path / "j", broken))


# ---- where role maps come from: global and auto ------------------------------------------------
TINY_ATTR = ("MODEL.BACKBONE.PRETRAINED", "True", "MODEL.BACKBONE.NAME", "tiny-attr", "TRAINER.DEAR.J", "5")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "head_roles"


def test_auto_analysis_is_bound_to_seed_shots_and_class_subset(data_root, tmp_path, cache, capsys):
    """Runs that differ only in seed, shots or class subset never share an `auto` analysis, even
    where their training images are the same (4 images a class: 8 and 16 shots take them all).
    The backbone is pretrained (tiny-attr), so no random-init seed hides a missing key."""
    opts = (*TINY_ATTR, "TRAINER.DEAR.ANALYSIS_N_TEXTS", "4", "DATASET.NUM_SHOTS", "8")
    variants = {
        "reference": {},
        "seed": {"seed": 2},
        "shots": {"opts": opts[:-2] + ("DATASET.NUM_SHOTS", "16")},
        "subset": {"sub": "all"},
    }
    files = {}
    for name, change in variants.items():
        trainer = build(argv(data_root, tmp_path / name, "auto", **{"opts": opts, **change}))
        copy = tmp_path / name / "role_map.json"
        files[name] = json.loads(copy.read_text())["cache_key"]
        assert trainer.role_map.heads == read_role_map(copy).heads
    assert "computing the head analysis" in capsys.readouterr().out
    assert len(sorted(cache.glob("*__auto__*.json"))) == 4
    scopes = {name: key["scope"] for name, key in files.items()}
    assert scopes["reference"] == {"kind": "auto", "dataset": "Caltech101", "seed": 1, "shots": 8, "subsample": "base"}
    assert scopes["seed"]["seed"] == 2 and scopes["shots"]["shots"] == 16 and scopes["subset"]["subsample"] == "all"
    assert files["shots"]["images"] == files["reference"]["images"]  # same images, still its own analysis
    again = build(argv(data_root, tmp_path / "again", "auto", opts=opts))
    assert "using the cached analysis" in capsys.readouterr().out
    assert (tmp_path / "again" / "role_map.json").read_bytes() == (tmp_path / "reference" / "role_map.json").read_bytes()
    assert torch.equal(again.model.masks, build(argv(data_root, tmp_path / "r2", "auto", opts=opts)).model.masks)


def make_dtd_like(root):
    """The mini dataset's images as a DTD tree (class folders; the split is made on first use)."""
    shutil.copytree(root / "caltech-101" / "101_ObjectCategories", root / "dtd" / "images")
    return root


def test_global_map_is_one_file_for_every_dataset_and_seed(data_root, tmp_path, cache, capsys):
    """ROLE_MAP global: the backbone's map, analysed once on ANALYSIS_IMAGES and copied, byte for
    byte, into every run of any dataset and seed."""
    make_dtd_like(data_root) if not (data_root / "dtd").exists() else None
    images = data_root / "caltech-101" / "101_ObjectCategories"
    opts = (*TINY_ATTR, "TRAINER.DEAR.ANALYSIS_IMAGES", str(images), "TRAINER.DEAR.ANALYSIS_N_TEXTS", "4")
    runs = [("caltech101", 1), ("caltech101", 2), ("dtd", 3)]
    copies = []
    for dataset, seed in runs:
        build(argv(data_root, tmp_path / f"{dataset}{seed}", "global", opts=opts, seed=seed, dataset=dataset))
        copies.append((tmp_path / f"{dataset}{seed}" / "role_map.json").read_bytes())
    out = capsys.readouterr().out
    assert out.count("computing the head analysis of tiny-attr once on 45 images") == 1
    assert out.count("using the cached analysis") == 2
    assert copies[0] == copies[1] == copies[2]
    [cached] = cache.glob("tiny-attr__global__*.json")
    assert cached.read_bytes() == copies[0]
    assert (tmp_path / "dtd3" / "role_map.png").read_bytes() == cached.with_suffix(".png").read_bytes()
    key = json.loads(copies[0])["cache_key"]
    assert key["scope"] == {"kind": "global"} and key["weights"].startswith("sha256:") and key["images"]["count"] == 45


def test_global_map_without_its_images_says_how_to_fix_before_anything_loads(data_root, tmp_path, cache, monkeypatch,
                                                                               capsys):
    """No ImageNet: one error block, before the data or the model load, with the command lines that
    work without it (another image folder, a role map file or URL); changing the data root is no fix."""
    import trainers.dear.trainer as dear_trainer
    from engine.cli import run_cli

    def loaded(*args, **kwargs):
        raise AssertionError("the data loaded before the role map's source was checked")

    monkeypatch.setattr(dear_trainer.DeAR, "build_data_loader", loaded)
    monkeypatch.setattr(dear_trainer.DeAR, "load_backbone", loaded)
    with pytest.raises(SystemExit) as exit_:
        run_cli(main, argv(data_root, tmp_path / "g", "global", seed=3))
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: TRAINER.DEAR.ROLE_MAP global analyses the backbone's heads on "
                          "TRAINER.DEAR.ANALYSIS_IMAGES configs/datasets/imagenet.yaml, split test (ImageNet's "
                          "validation images), which cannot be read (ImageNet: dataset folder ")
    run = "bash scripts/dear/base2new_train.sh caltech101 3"
    for line in (f"{run} TRAINER.DEAR.ANALYSIS_IMAGES /path/to/photos", f"{run} TRAINER.DEAR.ROLE_MAP /path/to/roles.json",
                 f"{run} TRAINER.DEAR.ROLE_MAP https://<host>/<map>.json TRAINER.DEAR.ROLE_MAP_SHA256 <its sha256>"):
        assert line in err
    assert "DATASET.ROOT" not in err and "--root" not in err and "Traceback" not in err


def test_global_default_analyses_imagenet_validation_images(tmp_path, cache, capsys):
    """The default image set: ImageNet's validation images (CoOp's ImageNet test split), all of them."""
    root = make_caltech_like(tmp_path / "data")
    imagenet_tree(root, list(IMAGENET_SAMPLE)[:3], n_train=2, n_val=4, images=Images(tmp_path / "sources"))
    build(argv(root, tmp_path / "run", "global", opts=(*TINY_ATTR, "TRAINER.DEAR.ANALYSIS_N_TEXTS", "4")))
    assert "computing the head analysis of tiny-attr once on 12 images" in capsys.readouterr().out
    payload = json.loads((tmp_path / "run" / "role_map.json").read_text())
    val = sorted(str(p) for p in (root / "imagenet" / "images" / "val").rglob("*.JPEG"))
    assert payload["cache_key"]["images"] == {"count": 12, "sha256": files_digest(val)}


def test_a_run_folder_started_with_another_role_map_is_refused(data_root, role_map_file, tmp_path):
    build(argv(data_root, tmp_path / "run", role_map_file))
    other = write_map(tmp_path / "other.json", [{"role": "mixed"}] * 4)
    with pytest.raises(RunMismatchError, match=r"run/role_map.json is the role map this run started with and differs "
                                                r"from .*other.json .*resume with TRAINER.DEAR.ROLE_MAP .*run/role_map.json"):
        build(argv(data_root, tmp_path / "run", other))
    assert json.loads((tmp_path / "run" / "role_map.json").read_text()) == json.loads(role_map_file.read_text())
    build(argv(data_root, tmp_path / "run", role_map_file))  # the same map again: fine


def test_analysis_keys_reach_the_analysis_settings(data_root, tmp_path):
    from headroles.analysis import AnalysisSettings
    from trainers.dear.role_source import analysis_settings

    keys = ("TRAINER.DEAR.ANALYSIS_CLUSTER", "hdbscan", "TRAINER.DEAR.ANALYSIS_MIN_CLUSTER_SIZE", "3",
            "TRAINER.DEAR.ANALYSIS_N_TEXTS", "7", "TRAINER.DEAR.ANALYSIS_WEIGHTING", "variance",
            "TRAINER.DEAR.ANALYSIS_THRESHOLDS", "absolute", "TRAINER.DEAR.J", "2")
    cfg = setup_cfg(parse_args(argv(data_root, tmp_path / "s", "global", opts=keys)))
    clip = load_clip("tiny-test", pretrained=False)
    assert analysis_settings(cfg, clip) == AnalysisSettings(
        layers=(2,), attributes=("color", "shape", "texture", "object", "position"), n_texts=7, weighting="variance",
        cluster="hdbscan", thresholds="absolute", min_cluster_size=3)

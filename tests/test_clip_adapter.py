"""CLIP-Adapter (trainers/clip_adapter.py), the one-file trainer of docs/EXTENDING.md, and the
package auto-import that makes one file enough: exact zero-shot CLIP at ratio 0, parameter
counts from the model's width, adapter-only training steps and checkpoints, on the attribute
world with the pretrained tiny-attr CLIP."""
import json
import sys
from pathlib import Path

import pytest
import torch

from attrworld import derived
from backbone import load_clip
from engine.config import get_cfg, merge_file
from engine.registry import TRAINER_REGISTRY
from train import main, parse_args, setup_cfg
from trainers import import_submodules
from trainers.clip_adapter import AdapterCLIP, CLIPAdapter
from trainers.zsclip import ZeroshotCLIP

REPO = Path(__file__).resolve().parents[1]
ADAPTER_KEYS = {"down.weight", "up.weight"}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """AttrTextureShape (32 classes, the smallest attribute-world set), generated once."""
    root = tmp_path_factory.mktemp("DATA")
    derived.generate(derived.TEXTURE_SHAPE, root)
    return root


def argv(root, out, *extra, trainer="CLIPAdapter", config="CLIPAdapter/tiny", sub="base", opts=()):
    return [
        "--root", str(root), "--seed", "1", "--trainer", trainer,
        "--dataset-config-file", "configs/datasets/attr_texture_shape.yaml",
        "--config-file", f"configs/trainers/{config}.yaml", "--output-dir", str(out), *extra,
        "DATASET.NUM_SHOTS", "1", "DATASET.SUBSAMPLE_CLASSES", sub, "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TEST.BATCH_SIZE", "64", "OPTIM.MAX_EPOCH", "1", *opts,
    ]


def build(args):
    cfg = setup_cfg(parse_args(args))
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)


# ---- registration by auto-import -----------------------------------------------------------
def test_clip_adapter_is_registered_without_an_edit_to_the_package_init():
    assert TRAINER_REGISTRY.get("CLIPAdapter") is CLIPAdapter
    assert "clip_adapter" not in (REPO / "trainers" / "__init__.py").read_text()
    modules = {f"trainers.{p.stem}" for p in (REPO / "trainers").glob("*.py") if not p.name.startswith("_")}
    assert "trainers.clip_adapter" in modules and modules <= set(sys.modules)
    assert get_cfg().TRAINER.CLIPADAPTER == {"REDUCTION": 4, "RATIO": 0.2, "PREC": "fp32"}


@pytest.fixture()
def package(tmp_path, monkeypatch):
    """An importable package `autoload_pkg` under tmp_path, removed from sys.modules afterwards."""
    pkg = tmp_path / "autoload_pkg"
    (pkg / "sub").mkdir(parents=True)
    for rel, text in {"__init__.py": "", "sub/__init__.py": "", "b_mod.py": "VALUE = 2\n",
                      "_private.py": "raise RuntimeError('private modules are not imported')\n"}.items():
        (pkg / rel).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield pkg
    for name in [m for m in sys.modules if m.split(".")[0] == "autoload_pkg"]:
        del sys.modules[name]


def test_import_submodules_imports_modules_and_subpackages_but_not_private_ones(package):
    modules = import_submodules("autoload_pkg", [str(package)])
    assert [m.__name__ for m in modules] == ["autoload_pkg.b_mod", "autoload_pkg.sub"]
    assert modules[0].VALUE == 2 and "autoload_pkg._private" not in sys.modules


def test_a_module_that_fails_to_import_is_named(package):
    (package / "c_broken.py").write_text("import a_module_that_does_not_exist_anywhere\n")
    with pytest.raises(ImportError, match=r"'autoload_pkg\.c_broken' failed: ModuleNotFoundError"):
        import_submodules("autoload_pkg", [str(package)])


# ---- the model -----------------------------------------------------------------------------
@pytest.mark.parametrize("backbone,reduction,expected", [
    ("tiny-attr", 4, 8192),  # d = 128: 2 * 128 * 32
    ("tiny-attr", 8, 4096),  # 2 * 128 * 16
    ("tiny-test", 4, 512),   # d = 32: 2 * 32 * 8
])
def test_learnable_parameters_are_2_d_d_over_reduction(backbone, reduction, expected):
    clip = load_clip(backbone, pretrained=False)
    model = AdapterCLIP(clip, ["a photo of a cat.", "a photo of a dog."], reduction, 0.2)
    learnable = {k: p for k, p in model.named_parameters() if p.requires_grad}
    d = clip.embed_dim
    assert {k: tuple(p.shape) for k, p in learnable.items()} == {
        "adapter.down.weight": (d // reduction, d), "adapter.up.weight": (d, d // reduction)}
    assert sum(p.numel() for p in learnable.values()) == expected


def test_ratio_zero_is_zero_shot_clip_exactly_and_0_2_mixes_the_adapter_in(data_root, tmp_path):
    zeroshot = build(argv(data_root, tmp_path / "zs", trainer="ZeroshotCLIP", config="ZeroshotCLIP/tiny"))
    adapted = build(argv(data_root, tmp_path / "ca0", opts=("TRAINER.CLIPADAPTER.RATIO", "0.0")))
    default = build(argv(data_root, tmp_path / "ca"))
    assert isinstance(zeroshot, ZeroshotCLIP) and adapted.model.ratio == 0.0 and default.model.ratio == 0.2
    images, _ = zeroshot.parse_batch_test(next(iter(zeroshot.test_loader)))
    with torch.no_grad():
        expected = zeroshot.model(images)
        assert torch.equal(adapted.model(images), expected)
        with adapted.evaluation_context(), zeroshot.evaluation_context():
            assert torch.equal(adapted.model(images), zeroshot.model(images))
        assert not torch.allclose(default.model(images), expected)  # the adapter does act at 0.2
        x, a = default.model.clip.encode_image(images), default.model.adapter
        by_hand = 0.2 * torch.relu(torch.relu(x @ a.down.weight.t()) @ a.up.weight.t()) + 0.8 * x
        torch.testing.assert_close(default.model.image_features(images), by_hand)


# ---- training ------------------------------------------------------------------------------
def test_one_training_step_changes_the_adapter_and_nothing_else(data_root, tmp_path):
    trainer = build(argv(data_root, tmp_path / "step"))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.set_model_mode("train")
    summary = trainer.forward_backward(next(iter(trainer.train_loader_x)))
    assert summary["loss"] > 0
    changed = {k for k, v in trainer.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {f"adapter.{k}" for k in ADAPTER_KEYS}
    assert not trainer.model.clip.training  # the frozen CLIP (and its BatchNorm stem) stays in eval mode


def test_checkpoint_holds_the_adapter_only_and_serves_new_classes(data_root, tmp_path):
    base, new, again = tmp_path / "train_base", tmp_path / "test_new", tmp_path / "eval_base"
    main(argv(data_root, base))
    ckpt = torch.load(base / "clip_adapter" / "model.pth.tar-1", weights_only=False)
    assert {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()} == {"down.weight": (32, 128),
                                                                           "up.weight": (128, 32)}
    assert "Adapter 128 -> 32 -> 128, ratio 0.2: 8,192 learnable parameters" in (base / "log.txt").read_text()

    main(argv(data_root, again, "--eval-only", "--model-dir", str(base), "--load-epoch", "1"))
    accuracy = [json.loads((d / "results.json").read_text())["evaluations"]["test"]["metrics"]["accuracy"]
                for d in (base, again)]
    assert accuracy[0] == accuracy[1]

    main(argv(data_root, new, "--eval-only", "--model-dir", str(base), "--load-epoch", "1", sub="new"))
    results = json.loads((new / "results.json").read_text())
    assert results["subsample"] == "new" and results["trainer"] == "CLIPAdapter"
    assert "Loading weights to clip_adapter from" in (new / "log.txt").read_text()


# ---- configuration -------------------------------------------------------------------------
@pytest.mark.parametrize("opts,message", [
    (("TRAINER.CLIPADAPTER.RATIO", "1.5"), r"TRAINER\.CLIPADAPTER\.RATIO must be in \[0, 1\], got 1\.5"),
    (("TRAINER.CLIPADAPTER.REDUCTION", "0"), r"REDUCTION must be a positive integer, got 0"),
    (("TRAINER.CLIPADAPTER.REDUCTION", "256"), r"REDUCTION 256 leaves no hidden unit for the embedding width 128"),
])
def test_bad_settings_are_clear_errors(data_root, tmp_path, opts, message):
    with pytest.raises(ValueError, match=message):
        build(argv(data_root, tmp_path / "bad", opts=opts))


def test_shipped_configs_merge_and_sweep_configs_exist():
    assert set(CLIPAdapter.SWEEP_CONFIGS) == {"base2new", "xd", "dg", "fewshot", "tiny"}
    merged = {}
    for name in set(CLIPAdapter.SWEEP_CONFIGS.values()):
        merged[name] = get_cfg()
        merge_file(merged[name], str(REPO / "configs" / "trainers" / "CLIPAdapter" / f"{name}.yaml"))
        assert dict(merged[name].TRAINER.CLIPADAPTER) == {"REDUCTION": 4, "RATIO": 0.2, "PREC": "fp32"}
    assert merged["vit_b16"].MODEL.BACKBONE.NAME == "ViT-B/16" and merged["vit_b16"].OPTIM.MAX_EPOCH == 200
    assert merged["tiny"].MODEL.BACKBONE.NAME == "tiny-attr" and tuple(merged["tiny"].INPUT.SIZE) == (64, 64)


@pytest.mark.parametrize("protocol,options,expected", [
    ("base2new", ["--config-set", "tiny", "--datasets", "attr_color_shape"],
     ["base2new_train CLIPAdapter tiny attr_color_shape 1", "base2new_test CLIPAdapter tiny attr_color_shape 1"]),
    ("xd", ["--datasets", "dtd"], ["xd_train CLIPAdapter vit_b16 1", "xd_test CLIPAdapter vit_b16 dtd 1"]),
    ("dg", ["--datasets", "imagenet_r"], ["xd_train CLIPAdapter vit_b16 1", "xd_test CLIPAdapter vit_b16 imagenet_r 1"]),
    ("fewshot", ["--datasets", "dtd", "--shots", "1", "4"],
     ["SHOTS=1 bash scripts/run.sh few_shot CLIPAdapter vit_b16 dtd 1",
      "SHOTS=4 bash scripts/run.sh few_shot CLIPAdapter vit_b16 dtd 1"]),
])
def test_sweep_dry_run_lists_the_runs_of_the_new_trainer(capsys, protocol, options, expected):
    from sweeps.command import main as sweep_main

    assert sweep_main(["--dry-run", "--protocol", protocol, "--methods", "CLIPAdapter", "--seeds", "1", *options]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(expected) and all(line.endswith(e) for line, e in zip(lines, expected)), lines


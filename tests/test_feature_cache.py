"""Frozen image features reused across evaluations (engine/feature_cache.py): bit-identical logits,
and never a stale entry when an image, the transform, the backbone weights or the precision change."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import engine.cache

from backbone import model_configs
from engine.cache import files_digest
from engine.feature_cache import FeatureCache
from engine.registry import TRAINER_REGISTRY
from tests.minidata import make_caltech_like
from train import main, parse_args, setup_cfg
from trainers.common import IMAGE_PATH, FrozenFeatures, uses_frozen_features
from trainers.zsclip import ZeroShotClassifier

REPO = Path(__file__).resolve().parents[1]

TINY = {name: f"configs/trainers/{name}/{TRAINER_REGISTRY.get(name).SWEEP_CONFIGS['tiny']}.yaml"
        for name in TRAINER_REGISTRY.names() if "tiny" in TRAINER_REGISTRY.get(name).SWEEP_CONFIGS}
FROZEN_IMAGE_TOWER = {"ZeroshotCLIP", "CoOp", "CLIPAdapter", "CoCoOp"}  # the methods that may use the cache


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("PROMPTLAB_CACHE", str(folder))
    return folder / "image_features"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_caltech_like(tmp_path_factory.mktemp("data"), size=64)


def argv(root, trainer, out, *opts):
    return ["--root", str(root), "--seed", "1", "--trainer", trainer, "--dataset-config-file",
            "configs/datasets/caltech101.yaml", "--config-file", TINY[trainer], "--output-dir", str(out),
            "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "4", *opts]


def trainer_for(root, trainer, out, *opts):
    cfg = setup_cfg(parse_args(argv(root, trainer, out, *opts)))
    return TRAINER_REGISTRY.get(trainer)(cfg)


def eval_logits(trainer):
    """The logits TrainerX.test computes, batch by batch."""
    out = []
    with torch.no_grad(), trainer.evaluation_context():
        for inputs, _ in trainer.evaluation_batches(trainer.test_loader):
            with trainer.autocast():
                out.append(trainer.model_inference(inputs))
    return torch.cat(out)


def test_every_method_with_a_tiny_config_is_checked():
    assert FROZEN_IMAGE_TOWER < set(TINY) and {"MaPLe", "MMRL", "MMRLpp", "DeAR"} <= set(TINY)


@pytest.mark.parametrize("method", list(TINY))
def test_cached_features_give_bit_identical_logits(method, data_root, tmp_path, cache_dir, capsys):
    """Every registered method: a first and a second evaluation (cold, then warm cache) give the
    logits of an evaluation without the cache, bit for bit; only the methods with a frozen image
    tower store an entry (a prompted tower served frozen features would give other logits)."""
    frozen = method in FROZEN_IMAGE_TOWER
    trainer = trainer_for(data_root, method, tmp_path / "a")
    if frozen:
        off = trainer_for(data_root, method, tmp_path / "b", "TEST.FEATURE_CACHE", "False")
        off.model.load_state_dict(trainer.model.state_dict())
        plain = eval_logits(off)
        assert "not cached: TEST.FEATURE_CACHE is off" in capsys.readouterr().out
    cold = eval_logits(trainer)
    assert ("computed and stored in" if frozen else "not cached: the method changes the image tower") \
        in capsys.readouterr().out
    warm = eval_logits(trainer)
    assert ("reused from" if frozen else "not cached: the method changes the image tower") in capsys.readouterr().out
    assert torch.equal(cold, warm) and (not frozen or torch.equal(plain, cold))
    assert len(list(cache_dir.glob("*.pt"))) == int(frozen)


def test_one_entry_serves_every_method_and_seed(data_root, tmp_path, cache_dir):
    for i, method in enumerate(["ZeroshotCLIP", "CoOp", "CLIPAdapter", "CoCoOp"]):
        eval_logits(trainer_for(data_root, method, tmp_path / str(i), "SEED", str(i + 1)))
    assert len(list(cache_dir.glob("*.pt"))) == 1


def test_methods_that_prompt_the_image_tower_never_use_it(data_root, tmp_path, cache_dir, capsys):
    trainer = trainer_for(data_root, "CoOp", tmp_path / "a")
    trainer.model.frozen_image_tower = False
    batches = list(trainer.evaluation_batches(trainer.test_loader))
    assert not any(isinstance(x, FrozenFeatures) for x, _ in batches)
    assert "not cached: the method changes the image tower" in capsys.readouterr().out


def entries(cache_dir):
    return sorted(p.name for p in cache_dir.glob("*.pt"))


def test_a_changed_image_is_never_served_stale(tmp_path, cache_dir):
    root = make_caltech_like(tmp_path / "data", size=64)
    trainer = trainer_for(root, "ZeroshotCLIP", tmp_path / "a")
    before = eval_logits(trainer)
    image = Path(trainer.test_loader.dataset.items[0].impath)
    shutil.copyfile(Path(trainer.test_loader.dataset.items[-1].impath), image)
    after = eval_logits(trainer_for(root, "ZeroshotCLIP", tmp_path / "b"))
    assert len(entries(cache_dir)) == 2
    expected = eval_logits(trainer_for(root, "ZeroshotCLIP", tmp_path / "c", "TEST.FEATURE_CACHE", "False"))
    assert torch.equal(after, expected) and not torch.equal(after[0], before[0])


@pytest.mark.parametrize("first, second", [
    (("INPUT.INTERPOLATION", "bicubic"), ("INPUT.INTERPOLATION", "bilinear")),
    (("TRAINER.CPU_AMP", "fp32"), ("TRAINER.CPU_AMP", "bf16")),
    (("DATALOADER.TEST.BATCH_SIZE", "4"), ("DATALOADER.TEST.BATCH_SIZE", "3")),
], ids=["transform", "precision", "batch"])
def test_a_changed_transform_or_precision_makes_a_new_entry(first, second, data_root, tmp_path, cache_dir):
    amp = ("TRAINER.COOP.PREC", "amp")
    eval_logits(trainer_for(data_root, "CoOp", tmp_path / "a", *amp, *first))
    eval_logits(trainer_for(data_root, "CoOp", tmp_path / "b", *amp, *first))
    assert len(entries(cache_dir)) == 1
    eval_logits(trainer_for(data_root, "CoOp", tmp_path / "c", *amp, *second))
    assert len(entries(cache_dir)) == 2


def test_changed_backbone_weights_make_a_new_entry(data_root, tmp_path, cache_dir, monkeypatch):
    eval_logits(trainer_for(data_root, "ZeroshotCLIP", tmp_path / "a"))
    weights = tmp_path / "weights"
    weights.mkdir()
    state = torch.load(model_configs.WEIGHTS_DIR / "tiny-attr.pt", weights_only=True)
    state["visual.proj"] = state["visual.proj"] * 1.01
    torch.save(state, weights / "tiny-attr.pt")
    monkeypatch.setattr(model_configs, "WEIGHTS_DIR", weights)
    changed = trainer_for(data_root, "ZeroshotCLIP", tmp_path / "b")
    logits = eval_logits(changed)
    assert len(entries(cache_dir)) == 2
    changed.cfg.defrost()
    changed.cfg.TEST.FEATURE_CACHE = False
    assert torch.equal(logits, eval_logits(changed))


def test_an_entry_is_used_only_for_its_own_key_and_images(tmp_path):
    cache = FeatureCache(tmp_path)
    images = [tmp_path / f"{i}.png" for i in range(3)]
    for p in images:
        p.write_bytes(b"x")
    paths = [str(p) for p in images]
    key = {"images": files_digest(paths), "transform": "t"}
    cache.save(key, paths, torch.ones(3, 2))
    assert torch.equal(cache.load(key, paths), torch.ones(3, 2))
    assert cache.load(key, paths[::-1]) is None  # same key, another order
    other = {**key, "transform": "u"}
    cache.path(key).rename(cache.path(other))  # a file under another key's name
    assert cache.load(other, paths) is None
    cache.path(other).write_bytes(b"garbage")
    assert cache.load(other, paths) is None
    images[1].write_bytes(b"xy")  # size changes the signature
    assert files_digest(paths) != key["images"]


def test_a_sweep_of_runs_reuses_the_features(data_root, tmp_path, cache_dir):
    """Through train.py: the second method's evaluation reads the first one's entry."""
    main(["--eval-only", *argv(data_root, "ZeroshotCLIP", tmp_path / "zs")])
    main(argv(data_root, "CLIPAdapter", tmp_path / "ad", "OPTIM.MAX_EPOCH", "1"))
    assert "Image features reused from" in (tmp_path / "ad" / "log.txt").read_text()
    assert len(entries(cache_dir)) == 1


def rewrite_as_bitmaps(paths):
    """Every image as an uncompressed bitmap under its own name: all the same byte size."""
    for path in paths:
        with Image.open(path) as img:
            img.convert("RGB").save(path, format="BMP")
    assert len({os.path.getsize(p) for p in paths}) == 1


def test_images_replaced_with_the_same_size_and_mtime_are_never_served_stale(tmp_path, cache_dir, monkeypatch, capsys):
    """The issue's case: the test images swapped for others of the same byte size with their
    modification times restored (`cp -p`, `rsync -a`, `tar -x`): the entry is not reused, even
    with the digest of the old image list remembered, and the logits are those without the cache."""
    monkeypatch.setattr(engine.cache, "RACY_SECONDS", 0.0)  # remember digests of files written just now
    root = make_caltech_like(tmp_path / "data", size=64)
    trainer = trainer_for(root, "ZeroshotCLIP", tmp_path / "a")
    paths = [d.impath for d in trainer.test_loader.dataset.items]
    rewrite_as_bitmaps(paths)
    before = eval_logits(trainer)
    assert eval_logits(trainer_for(root, "ZeroshotCLIP", tmp_path / "b")).equal(before)
    assert "reused from" in capsys.readouterr().out
    assert any(k.startswith("files:") for k in json.loads((cache_dir.parent / "digests.json").read_text()))
    stats = [os.stat(p) for p in paths]
    contents = [Path(p).read_bytes() for p in paths]
    for path, data, st in zip(paths, contents[1:] + contents[:1], stats):  # each image gets the next one's pixels
        Path(path).write_bytes(data)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert [(os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in paths] == [(s.st_size, s.st_mtime_ns) for s in stats]
    after = eval_logits(trainer_for(root, "ZeroshotCLIP", tmp_path / "c"))
    assert "computed and stored in" in capsys.readouterr().out and len(entries(cache_dir)) == 2
    expected = eval_logits(trainer_for(root, "ZeroshotCLIP", tmp_path / "d", "TEST.FEATURE_CACHE", "False"))
    assert torch.equal(after, expected) and not torch.equal(after, before)


def test_a_damaged_entry_is_recomputed_not_used(data_root, tmp_path, cache_dir, capsys):
    """One flipped byte inside the stored features (torch does not check its zip CRCs): the entry's
    recorded digest no longer matches, so the features are computed again."""
    first = eval_logits(trainer_for(data_root, "ZeroshotCLIP", tmp_path / "a"))
    (entry,) = cache_dir.glob("*.pt")
    data = bytearray(entry.read_bytes())
    stored = torch.load(entry, weights_only=True)["features"]
    data[bytes(data).index(stored.numpy().tobytes()) + 2] ^= 0x40  # inside the features' bytes
    entry.write_bytes(bytes(data))
    assert not torch.equal(torch.load(entry, weights_only=True)["features"], stored)  # loads without complaint
    capsys.readouterr()
    again = eval_logits(trainer_for(data_root, "ZeroshotCLIP", tmp_path / "b"))
    assert "computed and stored in" in capsys.readouterr().out and torch.equal(first, again)


def test_temp_files_of_killed_writes_are_removed_unless_their_writer_is_alive(data_root, tmp_path, cache_dir):
    cache_dir.mkdir(parents=True)
    dead = cache_dir / ".0123abcd.pt.k1ll3d00.tmp"  # its writer is gone: nobody holds 0123abcd.lock
    live = cache_dir / ".4567ef01.pt.wr1t1ng0.tmp"  # its writer still holds 4567ef01.lock
    other = cache_dir / "notes.tmp"  # not a temp file of ours
    for path in (dead, live, other):
        path.write_bytes(b"partial")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from engine.locks import FileLock; FileLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(60)"), str(cache_dir / "4567ef01.lock")],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        eval_logits(trainer_for(data_root, "ZeroshotCLIP", tmp_path / "a"))
        assert not dead.exists() and live.exists() and other.exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("method", IMAGE_PATH)
def test_a_subclass_that_redefines_an_image_path_method_gets_computed_features(method, data_root, tmp_path,
                                                                                cache_dir, capsys):
    """The flag an inherited class declares does not cover a subclass's own image path: redefining
    any image-path method (even with the same body) turns the cache off, naming the method."""
    trainer = trainer_for(data_root, "CLIPAdapter", tmp_path / "a")
    base = type(trainer.model)
    trainer.model.__class__ = type("MyAdapter", (base,), {method: getattr(base, method)})
    batches = list(trainer.evaluation_batches(trainer.test_loader))
    assert not any(isinstance(x, FrozenFeatures) for x, _ in batches)
    assert f"not cached: MyAdapter redefines {method} without declaring frozen_image_tower itself" in \
        capsys.readouterr().out
    trainer.model.__class__ = type("MyAdapter", (base,), {method: getattr(base, method), "frozen_image_tower": True})
    assert all(isinstance(x, FrozenFeatures) for x, _ in trainer.evaluation_batches(trainer.test_loader))


def test_a_subclass_that_changes_image_features_is_evaluated_on_its_own_features(data_root, tmp_path, cache_dir):
    """What docs/EXTENDING.md once showed (CLIP-Adapter overriding image_features): with the cache
    on, its evaluation is its own forward pass, not frozen features that skip the override."""

    class Halfway(ZeroShotClassifier):
        def image_features(self, images):
            x = super().image_features(images)
            return x + 3.0 * x.mean(dim=0, keepdim=True)

    logits = {}
    for cache in ("True", "False"):
        trainer = trainer_for(data_root, "ZeroshotCLIP", tmp_path / cache, "TEST.FEATURE_CACHE", cache)
        trainer.model.__class__ = Halfway
        logits[cache] = eval_logits(trainer)
    with torch.no_grad():
        direct = torch.cat([trainer.model(trainer.parse_batch_test(b)[0]) for b in trainer.test_loader])
    assert torch.equal(logits["True"], logits["False"]) and torch.equal(logits["True"], direct)
    assert not list(cache_dir.glob("*.pt"))


def test_image_head_is_the_hook_the_cache_serves(data_root, tmp_path, cache_dir):
    trainer = trainer_for(data_root, "CLIPAdapter", tmp_path / "a")
    assert "image_head" in vars(type(trainer.model)) and uses_frozen_features(trainer.model) == (True, "")

"""datasets/image_folder.py: class names, the split written once and reused, layouts, the protocol
steps (few-shot, base/new) and a base-to-new run through scripts/run.sh on a generated folder."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

import datasets  # noqa: F401  (registers ImageFolder)
from engine.config import get_cfg
from engine.data.base import DATASET_REGISTRY
from engine.errors import ConfigError, DataError
from tests.replica import load_tool

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["golden_retriever", "tabby_cat", "parrot", "hamster"]  # label order: sorted folder names
SORTED_NAMES = ["golden retriever", "hamster", "parrot", "tabby cat"]


def make_folder(folder: Path, per_class: int = 10, classes=CLASSES, nested: bool = True) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            path = folder / name / ("more" if nested and i % 3 == 0 else "") / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), (40 * c, 20 * i, 90)).save(path)
        (folder / name / "notes.txt").write_text("not an image")
    return folder


def load(root: Path, path: str = "pets", **keys):
    cfg = get_cfg()
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.IMAGE_FOLDER.PATH = str(root), "ImageFolder", path
    for key, value in keys.items():
        node = cfg
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return DATASET_REGISTRY.get("ImageFolder")(cfg)


def split_file(root: Path, name: str = "split_ImageFolder_p0.5-0.2_seed1.json") -> Path:
    return root / "pets" / name


def test_class_names_from_folders_and_classnames_txt(tmp_path):
    make_folder(tmp_path / "pets")
    assert load(tmp_path).classnames == SORTED_NAMES
    (tmp_path / "pets" / "classnames.txt").write_text(
        "golden_retriever Golden Retriever\nhamster dwarf hamster\n\nparrot grey parrot\ntabby_cat tabby\n")
    assert load(tmp_path).classnames == ["Golden Retriever", "dwarf hamster", "grey parrot", "tabby"]
    (tmp_path / "pets" / "classnames.txt").write_text("golden_retriever dog\nhamster h\nparrot p\ncat c\n")
    with pytest.raises(DataError, match=r"classnames.txt must name each class folder .* no folder for \['cat'\]; "
                                        r"no name for \['tabby_cat'\]"):
        load(tmp_path)


def test_split_is_stratified_written_once_and_reproducible(tmp_path, capsys):
    make_folder(tmp_path / "a" / "pets")
    first = load(tmp_path / "a")
    for part, per_class in ((first.train_x, 5), (first.val, 2), (first.test, 3)):  # CoOp's 50/20/30
        assert sorted(d.label for d in part) == sorted(list(range(4)) * per_class)
    paths = [d.impath for d in first.train_x + first.val + first.test]
    assert len(paths) == len(set(paths)) == 40 and all(p.endswith(".png") for p in paths)
    written = split_file(tmp_path / "a")
    stamp, text = written.stat().st_mtime_ns, written.read_text()
    assert json.loads(text)["train"][0][0].count("/") >= 1  # CoOp's format: paths relative to the folder

    capsys.readouterr()
    again = load(tmp_path / "a")
    assert "making it" not in capsys.readouterr().out and written.stat().st_mtime_ns == stamp
    assert [d.impath for d in again.train_x] == [d.impath for d in first.train_x]

    shutil.copytree(tmp_path / "a" / "pets", tmp_path / "b" / "pets", ignore=shutil.ignore_patterns("split_*"))
    load(tmp_path / "b")
    assert split_file(tmp_path / "b").read_text() == text  # the same seed gives the same split anywhere

    other = load(tmp_path / "a", **{"DATASET.IMAGE_FOLDER.SPLIT_SEED": 2})
    assert split_file(tmp_path / "a", "split_ImageFolder_p0.5-0.2_seed2.json").is_file()
    assert {d.impath for d in other.train_x} != {d.impath for d in first.train_x}
    load(tmp_path / "a", **{"DATASET.IMAGE_FOLDER.P_TRAIN": 0.6})
    assert split_file(tmp_path / "a", "split_ImageFolder_p0.6-0.2_seed1.json").is_file()
    assert written.read_text() == text  # earlier splits are never rewritten


def test_a_changed_folder_is_not_silently_reused(tmp_path):
    make_folder(tmp_path / "pets")
    load(tmp_path)
    Image.new("RGB", (8, 8)).save(tmp_path / "pets" / "parrot" / "new.png")
    with pytest.raises(DataError, match=r"no longer matches .* 1 images are not in it \(e.g. .*parrot/new.png\)"):
        load(tmp_path)
    (tmp_path / "pets" / "parrot" / "new.png").unlink()
    (tmp_path / "pets" / "parrot" / "more" / "0.png").rename(tmp_path / "pets" / "hamster" / "moved.png")
    with pytest.raises(DataError, match=r"1 listed images are gone .* 1 images are not in it"):
        load(tmp_path)


def test_train_test_layouts(tmp_path):
    for split in ("train", "test"):
        make_folder(tmp_path / "pets" / split, per_class=5, nested=False)
    d = load(tmp_path)
    assert (len(d.train_x), len(d.val), len(d.test)) == (16, 4, 20)  # val: 20% of each class's train images
    assert all("/train/" in x.impath for x in d.train_x + d.val) and all("/test/" in x.impath for x in d.test)
    assert split_file(tmp_path, "split_ImageFolder_val0.2_seed1.json").is_file()
    make_folder(tmp_path / "pets" / "val", per_class=2, nested=False)
    d = load(tmp_path)
    assert (len(d.train_x), len(d.val), len(d.test)) == (20, 8, 20) and d.classnames == SORTED_NAMES
    assert split_file(tmp_path, "split_ImageFolder.json").is_file()
    shutil.rmtree(tmp_path / "pets" / "test")
    with pytest.raises(DataError, match=r"has \['train', 'val'\] but needs both train/ and test/"):
        load(tmp_path)


def test_few_shot_and_base_new_on_the_split(tmp_path):
    make_folder(tmp_path / "pets")
    new = load(tmp_path, **{"DATASET.NUM_SHOTS": 2, "DATASET.SUBSAMPLE_CLASSES": "new", "SEED": 3})
    assert new.classnames == ["parrot", "tabby cat"] and len(new.train_x) == 4 and len(new.val) == 4
    assert len(new.test) == 6
    cache = tmp_path / "pets" / "split_fewshot" / "split_ImageFolder_p0.5-0.2_seed1" / "shot_2-seed_3.json"
    assert cache.is_file()
    assert load(tmp_path).classnames == SORTED_NAMES  # the cache folder is not taken for a class


def test_edited_class_names_reach_a_few_shot_run(tmp_path):
    """classnames.txt edited after a first few-shot run: the second run's classes carry the new
    names (they came from the few-shot cache's picks)."""
    make_folder(tmp_path / "pets")
    assert load(tmp_path, **{"DATASET.NUM_SHOTS": 2, "SEED": 1}).classnames == SORTED_NAMES
    (tmp_path / "pets" / "classnames.txt").write_text(
        "golden_retriever Golden Retriever\nhamster dwarf hamster\nparrot grey parrot\ntabby_cat tabby\n")
    ds = load(tmp_path, **{"DATASET.NUM_SHOTS": 2, "SEED": 1})
    assert ds.classnames == ["Golden Retriever", "dwarf hamster", "grey parrot", "tabby"]
    assert {d.classname for d in ds.train_x} == set(ds.classnames)


def test_config_errors(tmp_path):
    make_folder(tmp_path / "pets", per_class=2)
    with pytest.raises(DataError, match=r"too few images to split .* \{'golden retriever': 2, 'hamster': 2"):
        load(tmp_path)
    with pytest.raises(ConfigError, match="DATASET.IMAGE_FOLDER.PATH is empty"):
        load(tmp_path, path="")
    with pytest.raises(ConfigError, match=r"P_TRAIN \(0.9\) and P_VAL \(0.2\) must be positive with a sum below 1"):
        load(tmp_path, **{"DATASET.IMAGE_FOLDER.P_TRAIN": 0.9})
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load(tmp_path, path="nowhere")


def test_verify_data_checks_a_dataset_config(tmp_path, capsys):
    make_folder(tmp_path / "image_folder")
    verify = load_tool("verify_data")
    assert verify.main(["--root", str(tmp_path), "--config", str(REPO / "configs/datasets/image_folder.yaml")]) == 0
    row = next(line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("image_folder"))
    assert row == ["image_folder", "ok", "4", "20", "8", "12"]


def test_base_to_new_through_the_scripts(tmp_path):
    make_folder(tmp_path / "data" / "image_folder", per_class=6)
    env = {**os.environ, "DATA": str(tmp_path / "data"), "OUTPUT": str(tmp_path / "out"), "SHOTS": "2",
           "OMP_NUM_THREADS": "1"}
    opts = ["MODEL.BACKBONE.NAME", "tiny-test", "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(32, 32)",
            "OPTIM.MAX_EPOCH", "1", "DATALOADER.NUM_WORKERS", "0"]
    for step in ("base2new_train", "base2new_test"):
        run = subprocess.run(["bash", "scripts/run.sh", step, "CoOp", "tiny_ep10", "image_folder", "1", *opts],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    runs = tmp_path / "out" / "base2new"
    for part, epoch in (("train_base", 1), ("test_new", 1)):
        out = runs / part / "image_folder" / "shots_2" / "CoOp" / "tiny_ep10" / "seed1"
        results = json.loads((out / "results.json").read_text())
        log = (out / "log.txt").read_text()
        assert results["dataset"] == "ImageFolder" and results["evaluations"]["test"]["epoch"] == epoch
        # 2 of the 4 classes; per class 6 images split 3/1/2: 2 shots to train, 2 test images
        assert "# classes  2" in log and "# train_x  4" in log and "* total: 4" in log
        assert f"* accuracy: {results['evaluations']['test']['metrics']['accuracy']:.1f}%" in log
    assert "SUBSAMPLE NEW CLASSES!" in (runs / "test_new" / "image_folder" / "shots_2" / "CoOp" / "tiny_ep10" / "seed1" / "log.txt").read_text()

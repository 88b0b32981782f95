"""The loaders against CoOp's real split files (../shared/data/coop_splits).

Each split JSON gets a replica tree with a tiny image at every path it lists, in the folder
layout of CoOp's DATASETS.md; the registered dataset must then reproduce the JSON exactly,
and its base/new halves must match what the JSON implies.
"""
import json
import math
import os
import shutil

import pytest

from tests.replica import COOP_SPLITS, Images, load, records, split_replica

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = pytest.mark.skipif(
    not COOP_SPLITS.is_dir(),
    reason=f"CoOp split files not found at {COOP_SPLITS} (the read-only shared/ folder beside the repo)",
)

# DATASET.NAME -> (folder under DATA, image folder inside it), as in CoOp's DATASETS.md.
LAYOUT = {
    "Caltech101": ("caltech-101", "101_ObjectCategories"),
    "DescribableTextures": ("dtd", "images"),
    "EuroSAT": ("eurosat", "2750"),
    "OxfordFlowers": ("oxford_flowers", "jpg"),
    "OxfordPets": ("oxford_pets", "images"),
    "StanfordCars": ("stanford_cars", ""),
    "UCF101": ("ucf101", "UCF-101-midframes"),
}

# Sizes and class counts that CoOp reports for these splits.
KNOWN = {
    "Caltech101": (100, 4128, 1649, 2465),
    "DescribableTextures": (47, 2820, 1128, 1692),
    "EuroSAT": (10, 13500, 5400, 8100),
    "OxfordFlowers": (102, 4093, 1633, 2463),
    "OxfordPets": (37, 2944, 736, 3669),
    "StanfordCars": (196, 6509, 1635, 8041),
    "UCF101": (101, 7639, 1898, 3783),
}


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    """name -> (DATA root, parsed split JSON); each tree is built on first use."""
    root = tmp_path_factory.mktemp("coop_data")
    images = Images(tmp_path_factory.mktemp("tiny_src"))
    built = {}

    def get(name):
        if name not in built:
            folder, image_dir = LAYOUT[name]
            split = split_replica(COOP_SPLITS / f"split_zhou_{name}.json", root / folder, image_dir, images)
            if name == "OxfordFlowers":
                shutil.copyfile(COOP_SPLITS / "cat_to_name.json", root / folder / "cat_to_name.json")
            built[name] = split
        return root, built[name]

    return get


def class_names(split):
    names = {}
    for part in split.values():
        for _, label, classname in part:
            assert names.setdefault(label, classname) == classname, f"label {label} has two names"
    return [names[label] for label in range(len(names))]


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_loader_reproduces_split_json(replica, name):
    root, split = replica(name)
    ds = load(name, root)
    folder, image_dir = LAYOUT[name]
    for part in ("train", "val", "test"):
        got = records(getattr(ds, part if part != "train" else "train_x"), root / folder / image_dir)
        assert got == [tuple(rec) for rec in split[part]], part
    names = class_names(split)
    assert ds.num_classes == len(names)
    assert ds.classnames == names
    assert ds.lab2cname == dict(enumerate(names))
    classes, n_train, n_val, n_test = KNOWN[name]
    assert (ds.num_classes, len(ds.train_x), len(ds.val), len(ds.test)) == (classes, n_train, n_val, n_test)
    assert not (root / folder / "split_fewshot").exists()  # nothing is written without few-shot


@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_base_new_halves_match_json(replica, name):
    root, split = replica(name)
    folder, image_dir = LAYOUT[name]
    names = class_names(split)
    labels = sorted({rec[1] for rec in split["train"]})
    half = math.ceil(len(labels) / 2)
    seen = []
    for which, chosen in (("base", labels[:half]), ("new", labels[half:])):
        ds = load(name, root, subsample=which)
        relabel = {old: new for new, old in enumerate(chosen)}
        for part in ("train", "val", "test"):
            got = records(getattr(ds, part if part != "train" else "train_x"), root / folder / image_dir)
            expected = [(path, relabel[label], cname) for path, label, cname in split[part] if label in relabel]
            assert got == expected, (which, part)
        assert ds.classnames == [names[label] for label in chosen]
        seen += ds.classnames
    assert seen == names  # base then new: every class once, in label order


def test_flowers_names_agree_with_cat_to_name(replica):
    root, split = replica("OxfordFlowers")
    cat_to_name = json.loads((COOP_SPLITS / "cat_to_name.json").read_text())
    ds = load("OxfordFlowers", root)
    assert ds.classnames == [cat_to_name[str(label + 1)] for label in range(102)]

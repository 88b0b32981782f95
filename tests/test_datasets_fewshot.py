"""Few-shot picks: fixed by (split, K, seed) alone, cached with relative paths, independent of
the global RNG, of directory listing order and of where DATA lives."""
import json
import os
import random

import pytest

from tests.replica import Images, class_folders, load, records

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CLASSES = {f"texture_{i}": 20 for i in range(5)}  # 10/4/6 per class after CoOp's 50/20/30 split


def make_dtd(root, images):
    class_folders(root / "dtd" / "images", CLASSES, images)
    return root


def picks(ds, root):
    image_dir = root / "dtd" / "images"
    return records(ds.train_x, image_dir), records(ds.val, image_dir)


@pytest.fixture
def images(tmp_path):
    return Images(tmp_path / "src")


def test_same_seed_same_picks_across_runs_and_moves(tmp_path, images, capsys):
    root = make_dtd(tmp_path / "data", images)
    random.seed(0)
    first = picks(load("DescribableTextures", root, shots=8, seed=1), root)
    assert [len(part) for part in first] == [40, 20]  # K=8 per class; min(K, 4) per class for val
    cache = root / "dtd" / "split_fewshot" / "shot_8-seed_1.json"
    assert cache.is_file()
    cached = json.loads(cache.read_text())
    assert [tuple(r) for r in cached["train"]] == first[0]  # relative to the image folder
    assert str(root) not in cache.read_text()
    random.seed(12345)  # the global RNG plays no part, cached or regenerated
    assert picks(load("DescribableTextures", root, shots=8, seed=1), root) == first
    cache.unlink()
    assert picks(load("DescribableTextures", root, shots=8, seed=1), root) == first
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    capsys.readouterr()
    ds = load("DescribableTextures", moved, shots=8, seed=1)
    assert "Loading preprocessed few-shot data" in capsys.readouterr().out
    assert picks(ds, moved) == first
    assert all(d.impath.startswith(str(moved / "dtd" / "images")) for d in ds.train_x)


def test_different_seeds_pick_differently(tmp_path, images):
    root = make_dtd(tmp_path / "data", images)
    one = picks(load("DescribableTextures", root, shots=4, seed=1), root)
    two = picks(load("DescribableTextures", root, shots=4, seed=2), root)
    assert one[0] != two[0]
    assert sorted({r[1] for r in one[0]}) == sorted({r[1] for r in two[0]}) == list(range(5))
    assert (root / "dtd" / "split_fewshot" / "shot_4-seed_2.json").is_file()


def test_listing_order_does_not_change_split_or_picks(tmp_path, images, monkeypatch):
    a = make_dtd(tmp_path / "a", images)
    b = make_dtd(tmp_path / "b", images)
    picks_a = picks(load("DescribableTextures", a, shots=2, seed=1), a)
    listdir = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path=".": sorted(listdir(path), reverse=True))
    picks_b = picks(load("DescribableTextures", b, shots=2, seed=1), b)
    assert picks_a == picks_b
    split_a = json.loads((a / "dtd" / "split_zhou_DescribableTextures.json").read_text())
    split_b = json.loads((b / "dtd" / "split_zhou_DescribableTextures.json").read_text())
    assert split_a == split_b


def test_few_shot_then_base_new(tmp_path, images):
    root = make_dtd(tmp_path / "data", images)
    full = picks(load("DescribableTextures", root, shots=4, seed=1), root)
    base = load("DescribableTextures", root, shots=4, seed=1, subsample="base")
    new = load("DescribableTextures", root, shots=4, seed=1, subsample="new")
    assert base.classnames == ["texture_0", "texture_1", "texture_2"] and new.classnames == ["texture_3", "texture_4"]
    image_dir = root / "dtd" / "images"
    # base/new halves come from the same cached few-shot picks, relabelled from 0
    assert [r for r in full[0] if r[1] < 3] == records(base.train_x, image_dir)
    assert [(p, y - 3, c) for p, y, c in full[0] if y >= 3] == records(new.train_x, image_dir)

"""Few-shot picks: fixed by (split, K, seed) alone, cached with relative paths, independent of
the global RNG, of directory listing order and of where DATA lives."""
import json
import os
import random

import pytest

from engine.errors import DataError
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


# ---- picks bound to the split they were drawn from (issue 20, case 2) ------------------------------
def split_path(root):
    return root / "dtd" / "split_zhou_DescribableTextures.json"


def edit_split(root, edit):
    split = json.loads(split_path(root).read_text())
    edit(split)
    split_path(root).write_text(json.dumps(split))


def rename(old, new):
    def edit(split):
        for part in split.values():
            for record in part:
                record[2] = new if record[2] == old else record[2]
    return edit


def test_class_names_come_from_the_split_not_from_the_fewshot_cache(tmp_path, images, capsys):
    """A split whose class names were edited after a first run: the dataset (and so the model's
    prompts) has the new names; the cache, whose picks are still the split's, is bound to it."""
    root = make_dtd(tmp_path / "data", images)
    first = picks(load("DescribableTextures", root, shots=2, seed=1), root)
    edit_split(root, rename("texture_3", "woven texture"))
    capsys.readouterr()
    ds = load("DescribableTextures", root, shots=2, seed=1)
    assert ds.classnames[3] == "woven texture" and ds.lab2cname[3] == "woven texture"
    assert {d.classname for d in ds.train_x + ds.val if d.label == 3} == {"woven texture"}
    assert [(p, y) for p, y, _ in picks(ds, root)[0]] == [(p, y) for p, y, _ in first[0]]
    assert "1 classes were renamed since ('texture_3' -> 'woven texture'), but its picks are the current split's" \
        in capsys.readouterr().out
    cache = json.loads((root / "dtd" / "split_fewshot" / "shot_2-seed_1.json").read_text())
    assert cache["source"]["classes"][3] == "woven texture"
    new = load("DescribableTextures", root, shots=2, seed=1, subsample="new")
    assert new.classnames == ["woven texture", "texture_4"]


def test_a_split_that_gained_a_class_refuses_the_old_picks(tmp_path, images):
    """The old cache has no picks of the new class: accepting it gave a 5-class model against a
    6-class test set."""
    root = make_dtd(tmp_path / "data", images)
    load("DescribableTextures", root, shots=2, seed=1)
    class_folders(root / "dtd" / "images", {"texture_5": 6}, images)

    def add_class(split):
        for part, names in (("train", range(0, 3)), ("val", range(3, 4)), ("test", range(4, 6))):
            split[part] += [[f"texture_5/texture_5_{i:04d}.jpg", 5, "texture_5"] for i in names]

    edit_split(root, add_class)
    with pytest.raises(DataError, match=r"shot_2-seed_1.json was drawn from another version of this dataset's "
                                        r"split \(the split had 5 classes, it has 6 now\), and this split gives "
                                        r"other picks\. Move it aside \(or delete it\) and rerun"):
        load("DescribableTextures", root, shots=2, seed=1)
    (root / "dtd" / "split_fewshot" / "shot_2-seed_1.json").unlink()
    ds = load("DescribableTextures", root, shots=2, seed=1)
    assert ds.num_classes == 6 and {d.label for d in ds.train_x} == set(range(6))


def test_a_cache_that_records_no_split_is_used_only_if_its_picks_are_this_splits(tmp_path, images, capsys):
    root = make_dtd(tmp_path / "data", images)
    first = picks(load("DescribableTextures", root, shots=2, seed=1), root)
    cache = root / "dtd" / "split_fewshot" / "shot_2-seed_1.json"
    written = json.loads(cache.read_text())
    cache.write_text(json.dumps({"train": written["train"], "val": written["val"]}))  # as an earlier version wrote it
    capsys.readouterr()
    assert picks(load("DescribableTextures", root, shots=2, seed=1), root) == first
    out = capsys.readouterr().out
    assert "it predates split-bound caches, but its picks are the current split's; bound to it" in out
    assert json.loads(cache.read_text()) == written
    other = [r for r in records(load("DescribableTextures", root).train_x, root / "dtd" / "images")
             if r[1] == 0 and list(r) not in written["train"]][0]
    cache.write_text(json.dumps({"train": [list(other)] + written["train"][1:], "val": written["val"]}))
    with pytest.raises(DataError, match="it predates split-bound caches\\), and this split gives other picks"):
        load("DescribableTextures", root, shots=2, seed=1)


def test_a_class_with_no_training_image_is_still_a_class(tmp_path, images):
    """The class list is the split's: a class only in test used to vanish from the model."""
    root = make_dtd(tmp_path / "data", images)
    load("DescribableTextures", root)

    def test_only(split):
        for part in ("train", "val"):
            split[part] = [r for r in split[part] if r[1] != 4]

    edit_split(root, test_only)
    for shots in (-1, 2):
        ds = load("DescribableTextures", root, shots=shots, seed=1)
        assert ds.num_classes == 5 and ds.classnames[4] == "texture_4" and 4 not in {d.label for d in ds.train_x}


def test_an_unseeded_run_neither_reads_nor_writes_a_fewshot_cache(tmp_path, images, capsys):
    """SEED -1 (CoOp's "no fixed seed"): every run draws its own picks; reusing
    shot_2-seed_-1.json gave one fixed subset under weights that differ on every run."""
    root = make_dtd(tmp_path / "data", images)
    folder = root / "dtd" / "split_fewshot"
    folder.mkdir(parents=True)
    planted = folder / "shot_2-seed_-1.json"
    planted.write_text("not even JSON")
    drawn = [picks(load("DescribableTextures", root, shots=2, seed=-1), root)[0] for _ in range(2)]
    assert drawn[0] != drawn[1] and all(len(p) == 10 for p in drawn)
    out = capsys.readouterr().out
    assert "Unseeded run (SEED -1): 2-shot picks drawn at random for this run only, not cached" in out
    assert sorted(p.name for p in folder.iterdir()) == ["shot_2-seed_-1.json"]
    assert planted.read_text() == "not even JSON"

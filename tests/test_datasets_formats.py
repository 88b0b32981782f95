"""Loaders for datasets without a split JSON here, from replicas of their documented formats,
and CoOp's fallback splits when a JSON dataset's split file is missing."""
import json
import os
import sys

import pytest

from tests.replica import (
    IMAGENET_SAMPLE,
    Images,
    aircraft_tree,
    class_folders,
    imagenet_tree,
    imagenetv2_tree,
    load,
    records,
    sun397_tree,
    wnid_folders,
    write_classnames,
    write_lines,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture
def images(tmp_path):
    return Images(tmp_path / "src")


@pytest.fixture
def data(tmp_path):
    return tmp_path / "data"


def by_class(items):
    out = {}
    for d in items:
        out.setdefault(d.label, []).append(d)
    return out


# --- FGVCAircraft: official text files, no JSON ------------------------------------------

# variants.txt order is the label order (deliberately not sorted here)
VARIANTS = {"Cessna 172": (3, 2, 2), "707-320": (2, 2, 3), "F/A-18": (4, 3, 1), "A300B4": (1, 1, 1)}


def test_aircraft_reads_official_lists(data, images):
    aircraft_tree(data, VARIANTS, images)
    ds = load("FGVCAircraft", data)
    assert ds.classnames == list(VARIANTS)
    for i, part in enumerate((ds.train_x, ds.val, ds.test)):
        assert {label: len(items) for label, items in by_class(part).items()} == {
            label: counts[i] for label, counts in enumerate(VARIANTS.values())
        }
    lines = (data / "fgvc_aircraft" / "images_variant_test.txt").read_text().split("\n")
    image_id, variant = lines[0].split(" ", 1)
    assert records(ds.test[:1], data / "fgvc_aircraft" / "images") == [(f"{image_id}.jpg", 0, variant)]
    assert not list((data / "fgvc_aircraft").glob("*.json"))  # CoOp writes no split file for it


def test_aircraft_few_shot_and_base_new(data, images):
    aircraft_tree(data, VARIANTS, images)
    ds = load("FGVCAircraft", data, shots=2, seed=3)
    assert [len(v) for v in by_class(ds.train_x).values()] == [2, 2, 2, 1]  # all of a class with fewer
    assert [len(v) for v in by_class(ds.val).values()] == [2, 2, 2, 1]
    assert len(ds.test) == 7
    assert (data / "fgvc_aircraft" / "split_fewshot" / "shot_2-seed_3.json").is_file()
    new = load("FGVCAircraft", data, subsample="new")
    assert new.classnames == ["F/A-18", "A300B4"]
    assert sorted({d.label for d in new.test}) == [0, 1]


# --- SUN397 and Food101: CoOp's fallback splits (their JSON is not in shared/) ------------

SUN_CLASSES = ["a/abbey", "a/apartment_building/outdoor", "b/bakery/shop", "y/youth_hostel"]


def test_sun397_from_partitions_then_from_saved_json(data, images):
    sun397_tree(data, SUN_CLASSES, n_train=10, n_test=5, images=images)
    ds = load("SUN397", data)
    assert ds.classnames == ["abbey", "outdoor apartment_building", "shop bakery", "youth_hostel"]
    # CoOp: 80/20 of Training_01 per class for train/val, Testing_01 as test
    assert [len(v) for v in by_class(ds.train_x).values()] == [8] * 4
    assert [len(v) for v in by_class(ds.val).values()] == [2] * 4
    assert [len(v) for v in by_class(ds.test).values()] == [5] * 4
    image_dir = data / "sun397" / "SUN397"
    trainval = {f"{c}/sun_{i:04d}.jpg" for c in SUN_CLASSES for i in range(10)}
    got_train, got_val = (records(ds.train_x, image_dir), records(ds.val, image_dir))
    assert {r[0] for r in got_train} | {r[0] for r in got_val} == trainval
    assert not {r[0] for r in got_train} & {r[0] for r in got_val}
    saved = json.loads((data / "sun397" / "split_zhou_SUN397.json").read_text())
    assert [tuple(r) for r in saved["train"]] == got_train  # relative paths, CoOp's JSON format
    (data / "sun397" / "Training_01.txt").unlink()  # the saved split is used from now on
    again = load("SUN397", data)
    assert records(again.train_x, image_dir) == got_train and records(again.val, image_dir) == got_val


def test_food101_fallback_50_20_30(data, images):
    classes = {"apple_pie": 10, "baby_back_ribs": 10, "beef_carpaccio": 20}
    class_folders(data / "food-101" / "images", classes, images)
    ds = load("Food101", data)
    assert ds.classnames == list(classes)
    assert [len(v) for v in by_class(ds.train_x).values()] == [5, 5, 10]
    assert [len(v) for v in by_class(ds.val).values()] == [2, 2, 4]
    assert [len(v) for v in by_class(ds.test).values()] == [3, 3, 6]
    assert (data / "food-101" / "split_zhou_Food101.json").is_file()


def test_caltech101_fallback_ignores_and_renames(data, images):
    folders = {"BACKGROUND_Google": 10, "Faces_easy": 10, "Faces": 10, "Leopards": 10, "accordion": 10, "airplanes": 10}
    class_folders(data / "caltech-101" / "101_ObjectCategories", folders, images)
    ds = load("Caltech101", data)
    assert ds.classnames == ["face", "leopard", "accordion", "airplane"]
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == (20, 8, 12)


def test_eurosat_fallback_renames(data, images):
    class_folders(data / "eurosat" / "2750", {"AnnualCrop": 10, "SeaLake": 10}, images)
    assert load("EuroSAT", data).classnames == ["Annual Crop Land", "Sea or Lake"]


def test_pets_fallback_from_annotations(data, images):
    folder = data / "oxford_pets"
    breeds = [("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("yorkshire_terrier", 3, 2)]
    for name, n in (("trainval.txt", 10), ("test.txt", 3)):
        offset = 0 if name == "trainval.txt" else 100
        lines = [f"{b}_{i} {label} {species} {i}" for b, label, species in breeds for i in range(offset, offset + n)]
        write_lines(folder / "annotations" / name, lines)
        images.put_all(folder / "images", (f"{line.split()[0]}.jpg" for line in lines))
    ds = load("OxfordPets", data)
    assert ds.classnames == ["abyssinian", "american_bulldog", "yorkshire_terrier"]
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == (24, 6, 9)
    assert {r[0] for r in records(ds.test, folder / "images")} == {f"{b}_{i}.jpg" for b, _, _ in breeds for i in range(100, 103)}


def test_ucf101_fallback_from_official_lists(data, images):
    folder = data / "ucf101"
    actions = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]
    write_lines(folder / "ucfTrainTestlist" / "classInd.txt", (f"{i + 1} {a}" for i, a in enumerate(actions)))
    files = {a: a.replace("Handstand", "HandStand") for a in actions}  # UCF's own spelling quirk
    train = [f"{a}/v_{files[a]}_g{g:02d}_c01.avi {i + 1}" for i, a in enumerate(actions) for g in range(8, 13)]
    test = [f"{a}/v_{files[a]}_g{g:02d}_c01.avi" for a in actions for g in range(1, 3)]
    write_lines(folder / "ucfTrainTestlist" / "trainlist01.txt", train)
    write_lines(folder / "ucfTrainTestlist" / "testlist01.txt", test)
    renamed = {"ApplyEyeMakeup": "Apply_Eye_Makeup", "HandstandPushups": "Handstand_Pushups", "YoYo": "Yo_Yo"}
    for line in train + test:
        action, name = line.split()[0].split("/")
        images.put(folder / "UCF-101-midframes" / renamed[action] / name.replace(".avi", ".jpg"))
    ds = load("UCF101", data)
    assert ds.classnames == ["Apply_Eye_Makeup", "Handstand_Pushups", "Yo_Yo"]
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == (12, 3, 6)
    assert records(ds.test[:1], folder / "UCF-101-midframes") == [
        ("Apply_Eye_Makeup/v_ApplyEyeMakeup_g01_c01.jpg", 0, "Apply_Eye_Makeup")
    ]


def test_flowers_fallback_from_imagelabels_mat(data, images):
    scipy_io = pytest.importorskip("scipy.io")
    import numpy as np

    folder = data / "oxford_flowers"
    labels = np.array([[1, 2, 3] * 10])  # interleaved, 1-based, image_00001.jpg first
    folder.mkdir(parents=True)
    scipy_io.savemat(folder / "imagelabels.mat", {"labels": labels})
    names = {"1": "pink primrose", "2": "hard-leaved pocket orchid", "3": "canterbury bells"}
    (folder / "cat_to_name.json").write_text(json.dumps(names))
    images.put_all(folder / "jpg", (f"image_{i:05d}.jpg" for i in range(1, 31)))
    ds = load("OxfordFlowers", data)
    assert ds.classnames == list(names.values())
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == (15, 6, 9)
    # image_00002.jpg has 1-based label 2 in the .mat file
    assert {r[1] for r in records([*ds.train_x, *ds.val, *ds.test], folder / "jpg") if r[0] == "image_00002.jpg"} == {1}


def test_cars_fallback_from_devkit_mat(data, images):
    scipy_io = pytest.importorskip("scipy.io")
    import numpy as np

    folder = data / "stanford_cars"
    (folder / "devkit").mkdir(parents=True)
    class_names = np.empty((1, 2), dtype=object)
    class_names[0, :] = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]
    scipy_io.savemat(folder / "devkit" / "cars_meta.mat", {"class_names": class_names})

    def annotations(path, n):
        annos = np.zeros((1, n), dtype=[("fname", "O"), ("class", "O")])
        for i in range(n):
            annos[0, i]["fname"] = f"{i + 1:05d}.jpg"
            annos[0, i]["class"] = np.array([[i % 2 + 1]], dtype=np.uint8)
        scipy_io.savemat(path, {"annotations": annos})

    annotations(folder / "devkit" / "cars_train_annos.mat", 20)
    annotations(folder / "cars_test_annos_withlabels.mat", 6)
    images.put_all(folder / "cars_train", (f"{i:05d}.jpg" for i in range(1, 21)))
    images.put_all(folder / "cars_test", (f"{i:05d}.jpg" for i in range(1, 7)))
    ds = load("StanfordCars", data)
    assert ds.classnames == ["2000 AM General Hummer SUV", "2012 Acura RL Sedan"]
    assert (len(ds.train_x), len(ds.val), len(ds.test)) == (16, 4, 6)
    saved = json.loads((folder / "split_zhou_StanfordCars.json").read_text())
    assert {r[0].split("/")[0] for r in saved["train"]} == {"cars_train"}  # relative to the dataset folder
    assert records(ds.test[:2], folder) == [("cars_test/00001.jpg", 0, "2000 AM General Hummer SUV"),
                                            ("cars_test/00002.jpg", 1, "2012 Acura RL Sedan")]


# --- ImageNet ---------------------------------------------------------------------------

SAMPLE = ["n15075141", "n01440764", "n01860187", "n01443537"]  # toilet paper, tench, black swan, goldfish


def expected_names(wnids):
    return [IMAGENET_SAMPLE[w][1] for w in sorted(wnids)]


def test_imagenet_without_classnames_txt_uses_open_clip_names(data, images, capsys):
    imagenet_tree(data, SAMPLE, n_train=3, n_val=2, images=images)
    ds = load("ImageNet", data)
    assert ds.classnames == ["tench", "goldfish", "black swan", "toilet paper"]  # sorted wnid order
    assert (len(ds.train_x), len(ds.test)) == (12, 8)
    assert ds.val is ds.test  # CoOp: no val split, the test set is used
    assert "open_clip" in capsys.readouterr().out
    image_dir = data / "imagenet" / "images"
    assert records(ds.test[:1], image_dir) == [("val/n01440764/ILSVRC2012_val_n01440764_0.JPEG", 0, "tench")]


def test_imagenet_cache_is_relative_used_and_survives_moves(tmp_path, data, images, capsys):
    imagenet_tree(data, SAMPLE, n_train=3, n_val=2, images=images)
    first = load("ImageNet", data)
    cache = data / "imagenet" / "preprocessed.json"
    assert cache.is_file() and str(data) not in cache.read_text()
    images.put(data / "imagenet" / "images" / "train" / "n01440764" / "added_later.JPEG")
    capsys.readouterr()
    second = load("ImageNet", data)
    assert "Loading preprocessed ImageNet" in capsys.readouterr().out
    assert len(second.train_x) == len(first.train_x)  # the cached listing, not a rescan
    moved = tmp_path / "moved"
    data.rename(moved)
    third = load("ImageNet", moved)
    assert records(third.train_x, moved / "imagenet" / "images") == records(first.train_x, data / "imagenet" / "images")
    assert all(d.impath.startswith(str(moved)) for d in third.test)


def test_imagenet_few_shot_base_new_and_classnames_file(data, images):
    imagenet_tree(data, SAMPLE, n_train=3, n_val=2, images=images)
    write_classnames(data / "imagenet" / "classnames.txt", {w: f"class {w}" for w in sorted(SAMPLE)})
    ds = load("ImageNet", data, shots=2, subsample="base")
    assert ds.classnames == ["class n01440764", "class n01443537"]  # classnames.txt wins; base = 2 of 4
    assert len(ds.train_x) == 4 and len(ds.test) == 4 and ds.val is ds.test


def test_imagenet_positional_names_without_timm(data, images, monkeypatch):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    wnids = [f"n{i:08d}" for i in range(1000)]
    imagenet_tree(data, wnids, n_train=1, n_val=1, images=images)
    monkeypatch.setitem(sys.modules, "timm.data", None)  # no wnid list: pair with the sorted folders
    ds = load("ImageNet", data)
    assert ds.classnames == list(IMAGENET_CLASSNAMES)
    assert ds.classnames[0] == "tench" and ds.classnames[999] == "toilet paper"


# --- test-only variants -------------------------------------------------------------------

def test_sketch_labels_follow_sorted_wnids(data, images):
    counts = {"n01860187": 2, "n01440764": 3, "n15075141": 1}
    wnid_folders(data / "imagenet-sketch" / "images", counts, images, readme=False)
    ds = load("ImageNetSketch", data, shots=4, subsample="base")  # ignored: test-only
    assert ds.classnames == expected_names(counts)
    assert len(ds.test) == 6 and ds.train_x == ds.test and ds.val is None
    assert [d.label for d in ds.test] == [0, 0, 0, 1, 1, 2]


@pytest.mark.parametrize("name, folder, image_dir", [
    ("ImageNetA", "imagenet-adversarial", "imagenet-a"),
    ("ImageNetR", "imagenet-rendition", "imagenet-r"),
])
def test_a_and_r_use_their_subset_and_classnames_files(data, images, name, folder, image_dir):
    counts = {"n01443537": 2, "n01491361": 1, "n01484850": 3}
    wnid_folders(data / folder / image_dir, counts, images)  # README.txt beside the class folders
    ds = load(name, data)
    assert ds.num_classes == 3 and ds.classnames == expected_names(counts)
    assert sorted({d.label for d in ds.test}) == [0, 1, 2] and len(ds.test) == 6
    # CoOp's layout: classnames.txt copied into the dataset folder; $DATA/imagenet/ serves too
    custom = {w: f"{name} {w}" for w in sorted(counts)}
    write_classnames(data / "imagenet" / "classnames.txt", custom)
    assert load(name, data).classnames == list(custom.values())
    own = {w: f"own {w}" for w in sorted(counts)}
    write_classnames(data / folder / "classnames.txt", own)
    assert load(name, data).classnames == list(own.values())


def test_imagenetv2_labels_are_folder_numbers(data, images):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    imagenetv2_tree(data, {0: 2, 10: 3, 999: 2}, images)
    ds = load("ImageNetV2", data)
    assert len(ds.test) == 1000 + 4 and ds.num_classes == 1000 and ds.val is None
    image_dir = data / "imagenetv2" / "imagenetv2-matched-frequency-format-val"
    rec = {r[0]: r[1:] for r in records(ds.test, image_dir)}
    assert rec["10/10_2.jpeg"] == (10, IMAGENET_CLASSNAMES[10])
    assert rec["999/999_1.jpeg"] == (999, "toilet paper") and rec["2/2_0.jpeg"][0] == 2
    for f in (image_dir / "10").iterdir():
        f.unlink()
    with pytest.raises(FileNotFoundError, match=f"{image_dir / '10'}"):
        load("ImageNetV2", data)

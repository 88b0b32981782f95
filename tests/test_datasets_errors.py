"""Bad input: every error names the file or folder and says what to do."""
import json
import os
import re
import sys

import pytest

from tests.replica import IMAGENET_SAMPLE, Images, aircraft_tree, imagenet_tree, imagenetv2_tree, load, write_lines

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# DATASET.NAME -> folder under DATA, as in CoOp's DATASETS.md
FOLDERS = {
    "Caltech101": "caltech-101", "DescribableTextures": "dtd", "EuroSAT": "eurosat",
    "FGVCAircraft": "fgvc_aircraft", "Food101": "food-101", "ImageNet": "imagenet",
    "OxfordFlowers": "oxford_flowers", "OxfordPets": "oxford_pets", "StanfordCars": "stanford_cars",
    "SUN397": "sun397", "UCF101": "ucf101", "ImageNetV2": "imagenetv2", "ImageNetSketch": "imagenet-sketch",
    "ImageNetA": "imagenet-adversarial", "ImageNetR": "imagenet-rendition",
}


@pytest.fixture
def images(tmp_path):
    return Images(tmp_path / "src")


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_missing_dataset_folder_names_path(tmp_path, name):
    with pytest.raises(FileNotFoundError) as e:
        load(name, tmp_path)
    message = str(e.value)
    assert str(tmp_path / FOLDERS[name]) in message and "DATASET.ROOT" in message
    assert not (tmp_path / FOLDERS[name]).exists()  # nothing created on the way


def test_missing_images_counted_and_named(tmp_path, images):
    folder = tmp_path / "eurosat"
    split = {part: [[f"River/River_{part}_{i}.jpg", 0, "River"] for i in range(n)]
             for part, n in (("train", 5), ("val", 2), ("test", 3))}
    folder.mkdir()
    (folder / "split_zhou_EuroSAT.json").write_text(json.dumps(split))
    for part in split.values():
        images.put_all(folder / "2750", (rec[0] for rec in part))
    gone = [folder / "2750" / "River" / "River_train_3.jpg", folder / "2750" / "River" / "River_test_0.jpg"]
    for path in gone:
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"2 of 10 images") as e:
        load("EuroSAT", tmp_path)
    assert all(str(path) in str(e.value) for path in gone)
    assert "verify_data.py" in str(e.value)


def test_missing_image_after_imagenet_cache(tmp_path, images):
    imagenet_tree(tmp_path, list(IMAGENET_SAMPLE)[:2], n_train=2, n_val=1, images=images)
    load("ImageNet", tmp_path)
    gone = tmp_path / "imagenet" / "images" / "val" / "n01443537" / "ILSVRC2012_val_n01443537_0.JPEG"
    gone.unlink()
    with pytest.raises(FileNotFoundError, match="1 of 6 images") as e:
        load("ImageNet", tmp_path)
    assert str(gone) in str(e.value)


def test_missing_image_folder_for_fallback_split(tmp_path):
    (tmp_path / "caltech-101").mkdir()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "caltech-101" / "101_ObjectCategories"))):
        load("Caltech101", tmp_path)


def test_aircraft_missing_list_file(tmp_path, images):
    aircraft_tree(tmp_path, {"707-320": (1, 1, 1)}, images)
    (tmp_path / "fgvc_aircraft" / "images_variant_val.txt").unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "fgvc_aircraft" / "images_variant_val.txt"))):
        load("FGVCAircraft", tmp_path)


def test_aircraft_unknown_variant_names_line(tmp_path, images):
    aircraft_tree(tmp_path, {"707-320": (2, 1, 1)}, images)
    path = tmp_path / "fgvc_aircraft" / "images_variant_train.txt"
    path.write_text("1000000 707-320\n1000001 747-999\n")
    with pytest.raises(ValueError, match=f"line 2 of {re.escape(str(path))}.*747-999"):
        load("FGVCAircraft", tmp_path)


def test_pets_malformed_annotation_line(tmp_path):
    write_lines(tmp_path / "oxford_pets" / "annotations" / "trainval.txt", ["Abyssinian_1 1 1 1", "Abyssinian_2 1"])
    (tmp_path / "oxford_pets" / "images").mkdir()
    with pytest.raises(ValueError, match="line 2 of .*trainval.txt"):
        load("OxfordPets", tmp_path)


def test_flowers_fallback_without_scipy_says_so(tmp_path, monkeypatch):
    folder = tmp_path / "oxford_flowers"
    (folder / "jpg").mkdir(parents=True)
    (folder / "imagelabels.mat").write_bytes(b"")
    (folder / "cat_to_name.json").write_text(json.dumps({"1": "pink primrose"}))
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    with pytest.raises(ImportError, match="needs scipy, which is not installed") as e:
        load("OxfordFlowers", tmp_path)
    assert "download_splits.py" in str(e.value) and "split_zhou_OxfordFlowers.json" in str(e.value)


def test_imagenet_folder_that_is_not_a_wnid(tmp_path, images):
    imagenet_tree(tmp_path, ["n01440764", "holiday_photos"], n_train=1, n_val=1, images=images)
    with pytest.raises(ValueError, match="holiday_photos"):
        load("ImageNet", tmp_path)


def test_imagenet_train_val_class_mismatch(tmp_path, images):
    imagenet_tree(tmp_path, ["n01440764", "n01443537"], n_train=1, n_val=1, images=images)
    imagenet_tree(tmp_path, ["n01484850"], n_train=1, n_val=0, images=images)
    with pytest.raises(ValueError, match=r"only in train: \['n01484850'\]"):
        load("ImageNet", tmp_path)


def test_imagenet_missing_val_folder(tmp_path, images):
    imagenet_tree(tmp_path, ["n01440764"], n_train=1, n_val=0, images=images)
    assert not (tmp_path / "imagenet" / "images" / "val").exists()
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "imagenet" / "images" / "val"))):
        load("ImageNet", tmp_path)


def test_imagenetv2_missing_class_folder(tmp_path, images):
    imagenetv2_tree(tmp_path, {}, images)
    image_dir = tmp_path / "imagenetv2" / "imagenetv2-matched-frequency-format-val"
    for f in (image_dir / "7").iterdir():
        f.unlink()
    (image_dir / "7").rmdir()
    with pytest.raises(FileNotFoundError, match=r"missing \['7'\]"):
        load("ImageNetV2", tmp_path)

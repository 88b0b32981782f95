import pytest
import torch
from PIL import Image

import datasets  # noqa: F401
from engine.config import get_cfg
from engine.data.base import Datum, subsample_classes
from engine.data.manager import DataManager, read_image
from engine.data.transforms import build_test_transform, build_train_transform
from engine.errors import DataError
from tests.minidata import CLASSES, COUNTS, make_caltech_like


def items(labels):
    return [Datum(impath=f"/x/{i}.jpg", label=y, classname=f"c{y}") for i, y in enumerate(labels)]


def test_subsample_base_new_relabel():
    train = items([0, 1, 2, 3, 4, 4])
    test = items([4, 3, 2, 1, 0])
    base_train, base_test = subsample_classes(train, test, subsample="base")
    new_train, new_test = subsample_classes(train, test, subsample="new")
    # 5 classes: base = ceil(5/2) = 3 first sorted labels, new = the other 2, both relabelled from 0
    assert [(d.label, d.classname) for d in base_train] == [(0, "c0"), (1, "c1"), (2, "c2")]
    assert [(d.label, d.classname) for d in base_test] == [(2, "c2"), (1, "c1"), (0, "c0")]
    assert [(d.label, d.classname) for d in new_train] == [(0, "c3"), (1, "c4"), (1, "c4")]
    assert [(d.label, d.classname) for d in new_test] == [(1, "c4"), (0, "c3")]
    assert subsample_classes(train, test, subsample="all") == [train, test]
    with pytest.raises(ValueError, match="SUBSAMPLE_CLASSES"):
        subsample_classes(train, subsample="half")


def cfg_for(root, **kw):
    cfg = get_cfg()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = "Caltech101"
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.INPUT.SIZE = (32, 32)
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    for k, v in kw.items():
        node, key = k.split("__")
        cfg[node][key] = v
    return cfg


def test_transforms_follow_dassl(tmp_path):
    cfg = cfg_for(tmp_path, INPUT__INTERPOLATION="bicubic")
    train = build_train_transform(cfg).transforms
    test = build_test_transform(cfg).transforms
    assert [type(t).__name__ for t in train] == ["RandomResizedCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    assert train[0].scale == (0.08, 1.0) and train[0].interpolation.value == "bicubic"
    assert [type(t).__name__ for t in test] == ["Resize", "CenterCrop", "ToTensor", "Normalize"]
    img = Image.new("RGB", (64, 48))
    assert build_test_transform(cfg)(img).shape == (3, 32, 32)
    assert test[0].size == 32  # short side to max(SIZE), then center crop


def test_unknown_transform_suggests(tmp_path):
    cfg = cfg_for(tmp_path, INPUT__TRANSFORMS=("random_flipp",))
    with pytest.raises(ValueError, match="Did you mean 'random_flip'"):
        build_train_transform(cfg)


def test_data_manager_loaders_and_summary(tmp_path, capsys):
    dm = DataManager(cfg_for(make_caltech_like(tmp_path)))
    assert dm.num_classes == len(CLASSES)
    assert len(dm.dataset.train_x) == COUNTS["train"] * len(CLASSES)
    batch = next(iter(dm.test_loader))
    assert batch["img"].shape[1:] == (3, 32, 32) and batch["img"].dtype == torch.float32
    assert "# train_x" in capsys.readouterr().out


def test_missing_dataset_folder_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "caltech-101")):
        DataManager(cfg_for(tmp_path))


def test_corrupt_image_names_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError, match=f"Cannot read image {bad}"):
        read_image(str(bad))


def test_missing_images_are_counted_and_named(tmp_path):
    root = make_caltech_like(tmp_path)
    victim = root / "caltech-101" / "101_ObjectCategories" / CLASSES[0] / "image_0000.jpg"
    victim.unlink()
    with pytest.raises(FileNotFoundError, match=r"1 of \d+ images .* missing") as e:
        DataManager(cfg_for(root))
    assert str(victim) in str(e.value)

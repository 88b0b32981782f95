"""ImageFolder: any folder of class subfolders as a dataset for every protocol (docs/DATASETS.md).

    DATASET:
      NAME: "ImageFolder"
      IMAGE_FOLDER:
        PATH: "my_pets"      # relative to DATASET.ROOT (--root, $DATA), or absolute; default image_folder

Layouts: PATH/<class>/<images> (images at any depth inside a class folder), or PATH/train/<class>/
and PATH/test/<class>/ with an optional PATH/val/<class>/. Labels follow the sorted folder names.
Class names are the folder names with underscores read as spaces, unless PATH/classnames.txt
names them: one `<folder> <class name>` line per class folder.

The split is made once and written beside the images as a CoOp-format split file, so every
method and every seed reads the same split:
- class folders only: per class, a shuffle seeded by SPLIT_SEED, then P_TRAIN / P_VAL / the
  rest (CoOp's 50/20/30 by default, as CoOp splits DTD);
- train/ and test/ without val/: val is a seeded P_VAL of each class's train images (CoOp's
  20% of OxfordPets' trainval);
- train/, val/ and test/: used as they are.
The file name carries what the split depends on (split_ImageFolder_p0.5-0.2_seed1.json, ...).
A split file whose images are no longer those of the folder is an error, never silently reused;
few-shot picks are cached per split file (split_fewshot/<split file name>/).
"""
from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

from yacs.config import CfgNode as CN

from engine.cache import user_cache_dir
from engine.config import CONFIG_EXTENSIONS
from engine.data.base import (
    DATASET_REGISTRY, DATASETS_DOC, DatasetBase, Datum, apply_protocol, list_visible, random_split, read_split,
    save_split,
)
from engine.errors import ConfigError, DataError, MissingFileError
from engine.locks import locked

NAME = "ImageFolder"
DEFAULT_PATH = "image_folder"  # DATA/image_folder, as configs/datasets/image_folder.yaml says
CLASSNAMES_FILE = "classnames.txt"
FEWSHOT_DIR = "split_fewshot"
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
DOC = f"{DATASETS_DOC}#your-own-images-imagefolder"


def add_config(cfg: CN) -> None:
    if "IMAGE_FOLDER" not in cfg.DATASET:
        cfg.DATASET.IMAGE_FOLDER = CN({"PATH": DEFAULT_PATH, "P_TRAIN": 0.5, "P_VAL": 0.2, "SPLIT_SEED": 1})


CONFIG_EXTENSIONS.append(add_config)


def class_folders(folder: Path) -> list[str]:
    """Sorted visible sub-folders, without promptlab's few-shot cache."""
    return [n for n in list_visible(folder) if (folder / n).is_dir() and n != FEWSHOT_DIR]


def images_under(folder: Path) -> list[Path]:
    """Image files at any depth below `folder`, hidden files and folders skipped, sorted."""
    found = []
    for directory, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(directory) / f for f in files if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found)


def class_names(root: Path, folders: list[str]) -> dict[str, str]:
    """folder -> class name: classnames.txt when present (it must name every folder, only
    those), else the folder name with underscores as spaces."""
    path = root / CLASSNAMES_FILE
    if not path.is_file():
        return {f: f.replace("_", " ") for f in folders}
    names = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        folder, _, name = line.strip().partition(" ")
        if not name.strip():
            raise DataError(f"{path}, line {number}: expected '<folder> <class name>', got {line.strip()!r}")
        names[folder] = name.strip()
    unknown, unnamed = sorted(set(names) - set(folders)), sorted(set(folders) - set(names))
    if unknown or unnamed:
        raise DataError(
            f"{path} must name each class folder of {root} once: "
            + "; ".join(filter(None, [unknown and f"no folder for {unknown[:5]}", unnamed and f"no name for {unnamed[:5]}"]))
        )
    return names


@DATASET_REGISTRY.register()
class ImageFolder(DatasetBase):
    """A folder of class folders, split once and for all (see the module docstring)."""

    dataset_dir = DEFAULT_PATH  # the folder tools/verify_data.py checks without a config
    image_dir = ""
    OPTIONAL = True  # tools/verify_data.py: an absent folder is reported, not an error

    def __init__(self, cfg):
        c = cfg.DATASET.IMAGE_FOLDER
        if not c.PATH:
            raise ConfigError(f"DATASET.IMAGE_FOLDER.PATH is empty: set it to your image folder ({DOC})")
        if not (0 < c.P_VAL < 1 and 0 < c.P_TRAIN and c.P_TRAIN + c.P_VAL < 1):
            raise ConfigError(
                f"DATASET.IMAGE_FOLDER.P_TRAIN ({c.P_TRAIN}) and P_VAL ({c.P_VAL}) must be positive with a sum "
                "below 1: the rest of each class is its test set"
            )
        self.root = Path(os.path.expanduser(cfg.DATASET.ROOT), os.path.expanduser(c.PATH)).resolve()
        if not self.root.is_dir():
            raise MissingFileError(
                f"ImageFolder: {self.root} is not a folder (DATASET.ROOT {cfg.DATASET.ROOT!r} + "
                f"DATASET.IMAGE_FOLDER.PATH {c.PATH!r}; {DOC})"
            )
        self.p_train, self.p_val, self.seed = c.P_TRAIN, c.P_VAL, c.SPLIT_SEED
        split_path = self.root / self.split_name()
        train, val, test = self.load_or_make_split(split_path)
        fewshot_dir = self.root / FEWSHOT_DIR / split_path.stem
        train, val, test, lab2cname = apply_protocol(cfg, train, val, test, self.root, self.root,
                                                     fewshot_dir=fewshot_dir)
        super().__init__(train, val, test, lab2cname)

    # ---- layout -----------------------------------------------------------------------------------
    @property
    def split_layout(self) -> bool:
        return any((self.root / s).is_dir() for s in SPLITS)

    def split_name(self) -> str:
        if not self.split_layout:
            return f"split_{NAME}_p{self.p_train:g}-{self.p_val:g}_seed{self.seed}.json"
        if (self.root / "val").is_dir():
            return f"split_{NAME}.json"
        return f"split_{NAME}_val{self.p_val:g}_seed{self.seed}.json"

    def images_on_disk(self) -> dict[str, list[Datum]]:
        """The images on disk by split folder ('all' for the plain layout), labelled."""
        groups = {s: self.root / s for s in SPLITS if (self.root / s).is_dir()} if self.split_layout else {"all": self.root}
        if self.split_layout and not {"train", "test"} <= set(groups):
            raise DataError(f"ImageFolder: {self.root} has {sorted(groups)} but needs both train/ and test/ ({DOC})")
        folders = {s: class_folders(path) for s, path in groups.items()}
        classes = next(iter(folders.values()))
        for split, names in folders.items():
            if names != classes:
                raise DataError(f"ImageFolder: {groups[split]} has other class folders than {next(iter(groups.values()))}: "
                                f"{sorted(set(names) ^ set(classes))[:5]}")
        if not classes:
            raise DataError(f"ImageFolder: no class folders in {self.root} ({DOC})")
        names = class_names(self.root, classes)
        out = {}
        for split, path in groups.items():
            out[split] = [Datum(impath=str(image), label=label, classname=names[folder])
                          for label, folder in enumerate(classes) for image in images_under(path / folder)]
            empty = sorted(set(classes) - {Path(d.impath).relative_to(path).parts[0] for d in out[split]})
            if empty:
                raise DataError(f"ImageFolder: no images in {[str(path / f) for f in empty[:5]]} ({DOC})")
        return out

    # ---- split ------------------------------------------------------------------------------------
    def make_split(self, on_disk: dict[str, list[Datum]]) -> tuple[list[Datum], list[Datum], list[Datum]]:
        if "all" in on_disk:
            self.check_class_sizes(on_disk["all"], self.p_train, with_test=True)
            return random_split(on_disk["all"], self.p_train, self.p_val, seed=self.seed)
        if "val" in on_disk:
            return on_disk["train"], on_disk["val"], on_disk["test"]
        self.check_class_sizes(on_disk["train"], 1 - self.p_val, with_test=False)
        train, val, _ = random_split(on_disk["train"], 1 - self.p_val, self.p_val, seed=self.seed)
        return train, val, on_disk["test"]

    def check_class_sizes(self, items: list[Datum], p_train: float, with_test: bool) -> None:
        """Every class needs an image in each part of the split random_split makes."""
        counts = Counter(d.label for d in items)
        names = {d.label: d.classname for d in items}

        def parts(n: int) -> list[int]:
            n_train, n_val = round(n * p_train), round(n * self.p_val)
            return [n_train, n_val, n - n_train - n_val] if with_test else [n_train, n_val]

        small = {names[label]: n for label, n in sorted(counts.items()) if min(parts(n)) < 1}
        if small:
            raise DataError(
                f"ImageFolder: these classes of {self.root} have too few images to split ({p_train:g} train, "
                f"{self.p_val:g} val{', the rest test' if with_test else ''}; each part needs one image): "
                f"{dict(list(small.items())[:5])}. Add images or change DATASET.IMAGE_FOLDER.P_TRAIN / P_VAL"
            )

    def load_or_make_split(self, split_path: Path) -> tuple[list[Datum], list[Datum], list[Datum]]:
        on_disk = self.images_on_disk()
        lock = user_cache_dir("locks", hashlib.sha1(str(split_path).encode()).hexdigest() + ".lock")
        with locked(lock):  # parallel first runs write the split once
            if not split_path.is_file():
                print(f"No split file at {split_path}; making it (seed {self.seed})")
                save_split(*self.make_split(on_disk), split_path, self.root)
        train, val, test = read_split(split_path, self.root)
        self.check_split(split_path, [*train, *val, *test], [d for group in on_disk.values() for d in group])
        by_label = {d.label: d.classname for group in on_disk.values() for d in group}
        return tuple([Datum(d.impath, d.label, d.domain, by_label[d.label]) for d in part] for part in (train, val, test))

    def check_split(self, split_path: Path, listed: list[Datum], on_disk: list[Datum]) -> None:
        """The split must hold exactly the folder's images, each with its folder's label."""
        listed_labels = {d.impath: d.label for d in listed}
        disk_labels = {d.impath: d.label for d in on_disk}
        if listed_labels == disk_labels:
            return
        gone = sorted(set(listed_labels) - set(disk_labels))
        new = sorted(set(disk_labels) - set(listed_labels))
        relabelled = sorted(p for p in set(listed_labels) & set(disk_labels) if listed_labels[p] != disk_labels[p])
        details = "; ".join(filter(None, [
            gone and f"{len(gone)} listed images are gone (e.g. {gone[0]})",
            new and f"{len(new)} images are not in it (e.g. {new[0]})",
            relabelled and f"{len(relabelled)} images changed class (e.g. {relabelled[0]})",
        ]))
        raise DataError(
            f"ImageFolder: {split_path} no longer matches {self.root}: {details}. Delete it to make a new split "
            "(results made with the old split are not comparable with new ones)"
        )


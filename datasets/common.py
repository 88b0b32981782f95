"""Helpers that several dataset files share, on top of engine/data/base.py.

- reading annotation files (text, JSON, MATLAB) with errors that name the file and the fix;
- listing class folders in sorted order;
- `DiskDataset`: the CoOp pipeline for datasets read straight from disk at every load, with
  no split JSON (FGVCAircraft's official lists, ImageNet's folders, the test-only variants);
- ImageNet class names, for ImageNet and its four test-only variants.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from engine.data.base import (
    DATASETS_DOC,
    DatasetBase,
    Datum,
    apply_protocol,
    check_images_exist,
    items_from_class_folders,
    lab2cname_of,
    list_visible,
    require_dir,
)
from engine.errors import DataError, MissingFileError, UnknownNameError
from engine.io import read_json as read_json_file

T = TypeVar("T")

CLASSNAMES_FILE = "classnames.txt"
NUM_IMAGENET_CLASSES = 1000


def layout_hint(dataset: str) -> str:
    return (
        f"See the {dataset} section of {DATASETS_DOC} for what goes where, or run: "
        f"python tools/verify_data.py --root <DATA> --dataset {dataset}"
    )


def require_paths(root: Path, relative: Iterable[str], dataset: str) -> None:
    """Every path (relative to the dataset folder) must exist; names all missing ones."""
    missing = [str(root / p) for p in relative if not (root / p).exists()]
    if missing:
        raise MissingFileError(f"{dataset}: missing {', '.join(missing)}. {layout_hint(dataset)}")


def parse_lines(path: Path, dataset: str, parse: Callable[[str], T]) -> list[T]:
    """`parse` applied to each non-blank stripped line; a bad line is reported with its number."""
    require_paths(path.parent, [path.name], dataset)
    out = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(parse(line))
            except (ValueError, KeyError, IndexError) as e:
                raise DataError(f"{dataset}: cannot read line {number} of {path}: {line!r} ({e!r})") from e
    return out


def read_lines(path: Path, dataset: str) -> list[str]:
    return parse_lines(path, dataset, lambda line: line)


def read_json(path: Path, dataset: str):
    require_paths(path.parent, [path.name], dataset)
    return read_json_file(path, f"Replace it with the original file ({layout_hint(dataset)})")


def load_mat(path: Path, dataset: str, split_file: str):
    """scipy.io.loadmat, needed only to rebuild a split that CoOp publishes as JSON."""
    require_paths(path.parent, [path.name], dataset)
    try:
        from scipy.io import loadmat
    except ImportError as e:
        raise ImportError(
            f"{dataset}: {split_file} is missing, and rebuilding it from {path} needs scipy, which is "
            f"not installed. Either fetch CoOp's split (python tools/download_splits.py --root <DATA> "
            f"--dataset {dataset}) or install scipy (pip install scipy)."
        ) from e
    return loadmat(str(path))


def class_dirs(folder: Path) -> list[str]:
    """Sorted names of the visible sub-folders (files such as README.txt are skipped)."""
    return [name for name in list_visible(folder) if (folder / name).is_dir()]


def class_folder_items(image_dir: Path, dataset: str, ignored: Iterable[str] = (), rename=None) -> list[Datum]:
    """`items_from_class_folders`, after checking that the folder exists and holds images."""
    require_paths(image_dir.parent, [image_dir.name], dataset)
    items = items_from_class_folders(image_dir, ignored, rename)
    if not items:
        raise MissingFileError(f"{dataset}: no images in class folders under {image_dir}. {layout_hint(dataset)}")
    return items


class DiskDataset(DatasetBase):
    """CoOp's pipeline for datasets whose split comes from files on disk at every load.

    Subclasses set `dataset_dir`, `image_dir` and `required` (other paths, relative to the
    dataset folder, that must exist) and implement `read_splits() -> (train, val, test)`,
    with val None where the dataset has no validation split: ImageNet then validates on its
    test set, as in CoOp. `test_only` datasets (the ImageNet variants) use the test set as
    train_x too and ignore few-shot and base/new settings, as in CoOp.
    """

    dataset_dir: str = ""
    image_dir: str = ""
    required: tuple[str, ...] = ()
    test_only: bool = False

    def __init__(self, cfg):
        name = type(self).__name__
        self.data_root = Path(os.path.expanduser(cfg.DATASET.ROOT)).resolve()
        self.root = self.data_root / self.dataset_dir
        self.images = self.root / self.image_dir
        require_dir(self.root, name, "DATASET.ROOT")
        require_paths(self.root, [self.image_dir, *self.required], name)
        train, val, test = self.read_splits()
        shots, subsample = cfg.DATASET.NUM_SHOTS, cfg.DATASET.SUBSAMPLE_CLASSES
        if self.test_only:
            if shots >= 1 or subsample != "all":
                print(f"{name} is test-only: DATASET.NUM_SHOTS and DATASET.SUBSAMPLE_CLASSES are ignored")
            check_images_exist([*train, *(val or []), *test], self.root)
            lab2cname = lab2cname_of([*train, *(val or []), *test])
        else:
            train, val, test, lab2cname = apply_protocol(cfg, train, val, test, self.root, self.images)
            val = test if val is None else val
        super().__init__(train_x=train, val=val, test=test, lab2cname=lab2cname)

    def read_splits(self) -> tuple[list[Datum], list[Datum] | None, list[Datum]]:
        raise NotImplementedError


def read_classnames_file(path: Path, dataset: str) -> dict[str, str]:
    """CoOp's classnames.txt: one `wnid class name` per line, in label order."""
    pairs = parse_lines(path, dataset, lambda line: tuple(line.split(" ", 1)))
    bad = [p for p in pairs if len(p) != 2]
    if bad:
        raise DataError(f"{dataset}: {path} has lines without a class name after the wnid, e.g. {bad[0][0]!r}")
    return {wnid: classname.strip() for wnid, classname in pairs}


def imagenet_classnames(dataset_root: Path, data_root: Path, dataset: str, folders: list[str] | None = None) -> dict[str, str]:
    """wnid -> class name for the 1000 ImageNet classes, in CoOp's label order (sorted wnids).

    CoOp reads `classnames.txt` (CLIP's names) from the dataset folder. We look there, then
    in `$DATA/imagenet/`, and otherwise use open_clip's ImageNet class names (the same list,
    in the same order) paired with the sorted ImageNet-1k wnids (from timm, which open_clip
    depends on; or the given folders themselves when they are all 1000 classes).
    """
    for path in (dataset_root / CLASSNAMES_FILE, data_root / "imagenet" / CLASSNAMES_FILE):
        if path.is_file():
            print(f"{dataset}: class names from {path}")
            return read_classnames_file(path, dataset)
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    try:
        from timm.data import ImageNetInfo

        wnids = list(ImageNetInfo().label_names())
    except ImportError:
        if folders is None or len(folders) != NUM_IMAGENET_CLASSES:
            raise MissingFileError(
                f"{dataset}: no {CLASSNAMES_FILE} in {dataset_root} or {data_root / 'imagenet'}, and the "
                f"ImageNet wnid list (from timm) is unavailable. Fetch it with: "
                f"python tools/download_splits.py --root <DATA> --dataset {dataset}"
            ) from None
        wnids = sorted(folders)
    print(
        f"{dataset}: no {CLASSNAMES_FILE} in {dataset_root} or {data_root / 'imagenet'}; using "
        f"open_clip's ImageNet class names (the list CoOp's {CLASSNAMES_FILE} holds) in sorted-wnid order"
    )
    return dict(zip(wnids, IMAGENET_CLASSNAMES))


def check_wnid_folders(folders: list[str], names: dict[str, str], image_dir: Path, dataset: str) -> None:
    unknown = [f for f in folders if f not in names]
    if unknown:
        raise DataError(
            f"{dataset}: {len(unknown)} folders in {image_dir} are not ImageNet wnids with a class name, "
            f"e.g. {unknown[:3]}. Remove them, or fix {CLASSNAMES_FILE}. {layout_hint(dataset)}"
        )
    if not folders:
        raise MissingFileError(f"{dataset}: no class folders in {image_dir}. {layout_hint(dataset)}")


class ImageNetVariant(DiskDataset):
    """A test-only ImageNet variant with one folder per wnid (ImageNet-Sketch, -A, -R).

    Labels follow the sorted wnid folders present, so ImageNet-A and -R get labels 0..199
    over their 200-class subsets, as in CoOp.
    """

    test_only = True

    def read_splits(self):
        name = type(self).__name__
        folders = class_dirs(self.images)
        names = imagenet_classnames(self.root, self.data_root, name, folders)
        check_wnid_folders(folders, names, self.images, name)
        data = items_from_class_folders(self.images, rename={w: names[w] for w in folders})
        return data, None, data


def resolve_dataset_names(names: Iterable[str], known: Iterable[str]) -> list[str]:
    """DATASET.NAME values from what a user types: a name in any case (caltech101) or a
    config file's stem (oxford_pets, for configs/datasets/oxford_pets.yaml)."""
    import yaml

    known = list(known)
    aliases = {n.lower(): n for n in known}
    for path in sorted((Path(__file__).resolve().parents[1] / "configs" / "datasets").glob("*.yaml")):
        name = (yaml.safe_load(path.read_text()) or {}).get("DATASET", {}).get("NAME")
        if name in known:
            aliases.setdefault(path.stem.lower(), name)
    out = []
    for n in names:
        if n.lower() not in aliases:
            from engine.registry import did_you_mean

            raise UnknownNameError(f"Unknown dataset {n!r}.{did_you_mean(n, known)} Known: {', '.join(known)}")
        out.append(aliases[n.lower()])
    return out

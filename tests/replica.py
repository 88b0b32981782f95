"""Replica dataset trees for tests: the real folder layouts, with one tiny image hard-linked
at every image path (tens of thousands of files in a few seconds)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable

from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared"
COOP_SPLITS = SHARED / "data" / "coop_splits"

# A few real ImageNet-1k wnids with their index in the sorted list and CLIP's class name.
IMAGENET_SAMPLE = {
    "n01440764": (0, "tench"),
    "n01443537": (1, "goldfish"),
    "n01484850": (2, "great white shark"),
    "n01491361": (3, "tiger shark"),
    "n01860187": (100, "black swan"),
    "n03042490": (500, "cliff dwelling"),
    "n15075141": (999, "toilet paper"),
}


class Images:
    """Puts a tiny JPEG at any path by hard-linking (copying where links are unsupported)."""

    LINKS_PER_SOURCE = 20_000  # below ext4's 65,000 links per inode

    def __init__(self, source_dir: Path):
        self.source_dir = Path(source_dir)
        self.source_dir.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.source: Path | None = None
        self.made_dirs: set[Path] = set()

    def _new_source(self) -> Path:
        path = self.source_dir / f"tiny_{self.count}.jpg"
        Image.new("RGB", (8, 8), (self.count % 256, 80, 160)).save(path)
        return path

    def put(self, path: Path) -> None:
        if self.count % self.LINKS_PER_SOURCE == 0:
            self.source = self._new_source()
        parent = path.parent
        if parent not in self.made_dirs:
            parent.mkdir(parents=True, exist_ok=True)
            self.made_dirs.add(parent)
        try:
            os.link(self.source, path)
        except OSError:
            shutil.copyfile(self.source, path)
        self.count += 1

    def put_all(self, folder: Path, relative: Iterable[str]) -> None:
        for rel in relative:
            self.put(folder / rel)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines))


def split_replica(split_json: Path, dataset_root: Path, image_dir: str, images: Images) -> dict:
    """Copy a CoOp split JSON into `dataset_root` and an image at each path it lists."""
    dataset_root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(split_json, dataset_root / split_json.name)
    with open(split_json) as f:
        split = json.load(f)
    for records in split.values():
        images.put_all(dataset_root / image_dir, (rec[0] for rec in records))
    return split


def class_folders(image_dir: Path, counts: dict[str, int], images: Images, ext: str = ".jpg") -> None:
    """image_dir/<class>/<class>_<i><ext> for each class."""
    for cls, n in counts.items():
        images.put_all(image_dir / cls, (f"{cls}_{i:04d}{ext}" for i in range(n)))


def aircraft_tree(root: Path, counts: dict[str, tuple[int, int, int]], images: Images) -> None:
    """fgvc_aircraft/: variants.txt (in the given order), images_variant_{split}.txt, images/."""
    folder = root / "fgvc_aircraft"
    write_lines(folder / "variants.txt", counts)
    image_id = 1000000
    for i, split in enumerate(("train", "val", "test")):
        lines = []
        for variant, per_split in counts.items():
            for _ in range(per_split[i]):
                lines.append(f"{image_id} {variant}")
                images.put(folder / "images" / f"{image_id}.jpg")
                image_id += 1
        write_lines(folder / f"images_variant_{split}.txt", lines)


def sun397_tree(root: Path, classes: list[str], n_train: int, n_test: int, images: Images) -> None:
    """sun397/: ClassName.txt (/a/abbey), Training_01.txt / Testing_01.txt, SUN397/<class>/..."""
    folder = root / "sun397"
    write_lines(folder / "ClassName.txt", (f"/{c}" for c in classes))
    for name, n, offset in (("Training_01.txt", n_train, 0), ("Testing_01.txt", n_test, n_train)):
        lines = [f"/{c}/sun_{i:04d}.jpg" for c in classes for i in range(offset, offset + n)]
        write_lines(folder / name, lines)
        images.put_all(folder / "SUN397", (line[1:] for line in lines))


def imagenet_tree(root: Path, wnids: Iterable[str], n_train: int, n_val: int, images: Images) -> None:
    """imagenet/images/{train,val}/<wnid>/ (no classnames.txt)."""
    for wnid in wnids:
        images.put_all(root / "imagenet" / "images" / "train" / wnid, (f"{wnid}_{i}.JPEG" for i in range(n_train)))
        images.put_all(root / "imagenet" / "images" / "val" / wnid, (f"ILSVRC2012_val_{wnid}_{i}.JPEG" for i in range(n_val)))


def wnid_folders(image_dir: Path, counts: dict[str, int], images: Images, readme: bool = True) -> None:
    """<image_dir>/<wnid>/ for Sketch / A / R (A and R ship a README.txt beside the folders)."""
    class_folders(image_dir, counts, images)
    if readme:
        (image_dir / "README.txt").write_text("not a class\n")


def imagenetv2_tree(root: Path, counts: dict[int, int], images: Images) -> None:
    """imagenetv2/imagenetv2-matched-frequency-format-val/<0..999>/ (label = folder number)."""
    image_dir = root / "imagenetv2" / "imagenetv2-matched-frequency-format-val"
    for label in range(1000):
        n = counts.get(label, 1)
        images.put_all(image_dir / str(label), (f"{label}_{i}.jpeg" for i in range(n)))


def write_classnames(path: Path, names: dict[str, str]) -> None:
    """CoOp's classnames.txt format: `wnid class name` per line."""
    write_lines(path, (f"{wnid} {name}" for wnid, name in names.items()))


def load(name: str, root: Path, shots: int = -1, subsample: str = "all", seed: int = 1):
    """Build the registered dataset `name` from DATA=`root` through the config, as train.py does."""
    import datasets  # noqa: F401  (registers the datasets)
    from engine.config import get_cfg
    from engine.data.base import DATASET_REGISTRY

    cfg = get_cfg()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


def records(items, image_dir: Path) -> list[tuple[str, int, str]]:
    """(path relative to image_dir, label, class name) per Datum, in order."""
    return [(Path(d.impath).relative_to(image_dir).as_posix(), d.label, d.classname) for d in items]


def load_tool(name: str):
    """Import tools/<name>.py as a module (tools/ is not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tool_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

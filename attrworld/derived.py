"""Classification datasets derived from the world, generated in CoOp's on-disk layout.

A dataset is a `DerivedSpec`: which attributes make up a class ("red circle" is
color+shape), how labels are ordered, and how many images each class gets. `generate`
writes `<root>/<dataset_dir>/` with images/<class_folder>/*.png, the CoOp split JSON and
attributes.json (every image's ground-truth attributes, for attribute-level checks).
It builds everything in a hidden temp folder and renames it into place, so a folder
under that name is always complete.

Label order decides what base/new means, because `subsample_classes` keeps the first half
of the sorted labels as base. "latin" order walks the class grid by diagonals, so every
value of every class attribute occurs in both halves and "new" means unseen combinations;
"holdout" order sorts classes by their first attribute, so "new" means unseen values of it.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from attrworld.render import render, shift_hue
from attrworld.spec import ATTRIBUTES, sample_attributes
from engine.data.base import Datum, save_split
from engine.errors import DataError
from engine.io import atomic_write_text

IMAGE_DIR = "images"
ATTRIBUTES_FILE = "attributes.json"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DerivedSpec:
    name: str
    dataset_dir: str
    factors: tuple[str, ...]  # the attributes that define a class, in class-name word order
    order: str  # "latin" or "holdout"
    seed: int
    per_class: tuple[int, int, int] = (20, 5, 15)  # train / val / test images per class
    # Degrees every image's hues are turned after rendering (`render.shift_hue`): a domain shift
    # from the pretraining images, as real downstream datasets have one from CLIP's web data.
    hue_shift: float = 0.0

    @property
    def split_file(self) -> str:
        return f"split_{self.name}.json"

    def classes(self) -> list[tuple[str, ...]]:
        """Class attribute tuples in label order (label = index)."""
        if self.order == "latin":
            return latin_order(self.factors)
        if self.order == "holdout":
            return list(itertools.product(*(ATTRIBUTES[f] for f in self.factors)))
        raise ValueError(f"{self.name}: unknown label order {self.order!r}")

    def classnames(self) -> list[str]:
        return [" ".join(values) for values in self.classes()]


def latin_order(factors: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Class tuples ordered by diagonals of the (other factors) x (last factor) grid.

    With K combinations of the leading factors and B values of the last one (K divides B),
    class (k, b) gets rank (b - k * B/K) mod B; sorting by (rank, k) puts ranks < B/2 in the
    first half. Each k then has B/2 classes per half and each b has K/2, so every value of
    every factor is on both sides of the base/new cut.
    """
    leading = list(itertools.product(*(ATTRIBUTES[f] for f in factors[:-1])))
    last = ATTRIBUTES[factors[-1]]
    k_count, b_count = len(leading), len(last)
    if b_count % k_count or b_count % 2:
        raise ValueError(f"latin order needs {k_count} to divide an even {b_count} ({factors})")
    stride = b_count // k_count
    cells = [(k, b) for k in range(k_count) for b in range(b_count)]
    cells.sort(key=lambda kb: ((kb[1] - kb[0] * stride) % b_count, kb[0]))
    return [(*leading[k], last[b]) for k, b in cells]


def folder_name(classname: str) -> str:
    return classname.replace(" ", "_")


def _render_class(spec: DerivedSpec, label: int, values: tuple[str, ...], image_dir: Path):
    """Yield (split, Datum, attribute record) for every image of one class."""
    fixed = dict(zip(spec.factors, values))
    classname = " ".join(values)
    folder = image_dir / folder_name(classname)
    folder.mkdir(parents=True)
    index = 0
    for split, count in zip(SPLITS, spec.per_class):
        for _ in range(count):
            rng = np.random.default_rng([spec.seed, label, index])
            attrs = sample_attributes(rng, **fixed)
            image, nuisance = render(attrs, rng)
            image = shift_hue(image, spec.hue_shift)
            path = folder / f"{folder_name(classname)}_{index:04d}.png"
            image.save(path, compress_level=1)
            record = {**attrs.as_dict(), **asdict(nuisance)}
            yield split, Datum(impath=str(path), label=label, classname=classname), record
            index += 1


def _write(spec: DerivedSpec, folder: Path) -> None:
    image_dir = folder / IMAGE_DIR
    splits: dict[str, list[Datum]] = {s: [] for s in SPLITS}
    records = {}
    for label, values in enumerate(spec.classes()):
        for split, datum, record in _render_class(spec, label, values, image_dir):
            splits[split].append(datum)
            records[Path(datum.impath).relative_to(image_dir).as_posix()] = record
    meta = {"dataset": spec.name, "class_attributes": list(spec.factors), "hue_shift": spec.hue_shift,
            "images": records}
    atomic_write_text(folder / ATTRIBUTES_FILE, json.dumps(meta))
    save_split(splits["train"], splits["val"], splits["test"], folder / spec.split_file, image_dir)


def is_complete(spec: DerivedSpec, folder: Path) -> bool:
    return (folder / spec.split_file).is_file() and (folder / ATTRIBUTES_FILE).is_file()


def generate(spec: DerivedSpec, root: Path) -> Path:
    """Make `root/<dataset_dir>` if it is absent (atomically); return it."""
    target = Path(root) / spec.dataset_dir
    if target.exists():
        if not is_complete(spec, target):
            raise DataError(f"{target} exists but lacks {spec.split_file} or {ATTRIBUTES_FILE}; "
                                  f"it was not made by attrworld (delete it to regenerate)")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.dataset_dir}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would make the renamed dataset private
    try:
        print(f"Generating {spec.name} into {target}")
        _write(spec, tmp)
        os.rename(tmp, target)
    except OSError:
        if not is_complete(spec, target):  # not a lost race with another generator
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return target


def load_attributes(spec: DerivedSpec, root: Path) -> dict[str, dict]:
    """Ground-truth attributes per image, keyed by path relative to the image folder."""
    with open(Path(root) / spec.dataset_dir / ATTRIBUTES_FILE) as f:
        return json.load(f)["images"]


COLOR_SHAPE = DerivedSpec("AttrColorShape", "attr_color_shape", ("color", "shape"), "latin", seed=101)
TEXTURE_SHAPE = DerivedSpec("AttrTextureShape", "attr_texture_shape", ("texture", "shape"), "latin", seed=202)
SIZE_TEXTURE_SHAPE = DerivedSpec("AttrSizeTextureShape", "attr_size_texture_shape",
                                 ("size", "texture", "shape"), "latin", seed=303)
COLOR_HOLDOUT = DerivedSpec("AttrColorHoldout", "attr_color_holdout", ("color", "shape"), "holdout", seed=404)
HUE_SHIFT = DerivedSpec("AttrHueShift", "attr_hue_shift", ("color", "shape"), "holdout", seed=505, hue_shift=25.0)

DATASETS: dict[str, DerivedSpec] = {s.name: s for s in (COLOR_SHAPE, TEXTURE_SHAPE, SIZE_TEXTURE_SHAPE, COLOR_HOLDOUT,
                                                        HUE_SHIFT)}

"""Dataset records, the CoOp split/few-shot/base-new pipeline and the dataset registry.

Every dataset shares this logic; a dataset class only says where its files are and,
for the case where CoOp's split JSON is missing, how to build the split from the raw
annotations (`make_splits`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from engine import distributed
from engine.cache import user_cache_dir
from engine.errors import ConfigError, DataError, MissingFileError
from engine.io import atomic_write_text, read_json, remove_interrupted_saves
from engine.locks import locked
from engine.registry import Registry

DATASET_REGISTRY = Registry("dataset")

DATASETS_DOC = "docs/DATASETS.md"


@dataclass(frozen=True)
class Datum:
    """One labelled image (Dassl's field order: impath, label, domain, classname)."""

    impath: str
    label: int
    domain: int = 0
    classname: str = ""


class DatasetBase:
    """Dassl's data container: train_x / val / test lists of `Datum` plus label names.

    `lab2cname` is the dataset's class list (every pipeline of this toolbox passes the one its
    split defines: `apply_protocol`); without it the names are read off train_x, Dassl's rule,
    which dataset files written for Dassl rely on.
    """

    def __init__(self, train_x: list[Datum], val: list[Datum] | None, test: list[Datum],
                 lab2cname: dict[int, str] | None = None):
        self._train_x = train_x
        self._val = val
        self._test = test
        self._lab2cname = dict(lab2cname) if lab2cname is not None else lab2cname_of(train_x or test)

    @property
    def train_x(self) -> list[Datum]:
        return self._train_x

    @property
    def val(self) -> list[Datum] | None:
        return self._val

    @property
    def test(self) -> list[Datum]:
        return self._test

    @property
    def lab2cname(self) -> dict[int, str]:
        return self._lab2cname

    @property
    def classnames(self) -> list[str]:
        return [self._lab2cname[i] for i in range(len(self._lab2cname))]

    @property
    def num_classes(self) -> int:
        return len(self._lab2cname)


def lab2cname_of(items: Iterable[Datum]) -> dict[int, str]:
    """Label -> class name; labels must be 0..n-1 without holes."""
    mapping = {item.label: item.classname for item in items}
    labels = sorted(mapping)
    if labels != list(range(len(labels))):
        missing = sorted(set(range(max(labels, default=-1) + 1)) - set(labels))
        raise DataError(f"Labels must be contiguous from 0; missing labels {missing[:10]}")
    return mapping


class SplitDataset(DatasetBase):
    """CoOp's dataset pipeline: split JSON -> few-shot subset -> base/new subsample.

    Subclasses set `dataset_dir` (folder under DATASET.ROOT), `image_dir` (relative to
    it) and `split_file`; they override `make_splits` to rebuild the split from the raw
    annotations when the JSON is absent (it is then saved, as CoOp does).
    """

    dataset_dir: str = ""
    image_dir: str = ""
    split_file: str = ""

    def __init__(self, cfg):
        root = Path(os.path.expanduser(cfg.DATASET.ROOT)).resolve()
        self.root = root / self.dataset_dir
        self.images = self.root / self.image_dir
        require_dir(self.root, type(self).__name__, "DATASET.ROOT")
        split_path = self.root / self.split_file
        if split_path.is_file():
            train, val, test = read_split(split_path, self.images)
        else:
            print(f"No split file at {split_path}; building it from the raw annotations")
            train, val, test = self.make_splits()
            save_split(train, val, test, split_path, self.images)
        train, val, test, lab2cname = apply_protocol(cfg, train, val, test, self.root, self.images)
        super().__init__(train, val, test, lab2cname)

    def make_splits(self) -> tuple[list[Datum], list[Datum], list[Datum]]:
        raise MissingFileError(
            f"{type(self).__name__}: split file {self.root / self.split_file} is missing. "
            f"Fetch it with: python tools/download_splits.py --root <DATA> (see {DATASETS_DOC})"
        )


def apply_protocol(cfg, train: list[Datum], val: list[Datum] | None, test: list[Datum], root: Path, images: Path,
                   fewshot_dir: Path | None = None):
    """The steps every trainable dataset shares: few-shot subset (DATASET.NUM_SHOTS), base/new
    classes (DATASET.SUBSAMPLE_CLASSES), then one missing-image check; returns (train, val, test,
    lab2cname). `val` may be None (ImageNet has no validation split).

    The class list and names are the split's (every class of train, val and test), never the
    few-shot picks'. Picks are cached in `fewshot_dir` (default root/split_fewshot), bound to the
    split they were drawn from (`load_or_make_fewshot`)."""
    classes = lab2cname_of([*train, *(val or []), *test])
    if cfg.DATASET.NUM_SHOTS < 1:
        print(f"DATASET.NUM_SHOTS {cfg.DATASET.NUM_SHOTS}: every training image is used (Dassl's convention "
              "for NUM_SHOTS < 1)")
    else:
        train, fewshot_val = load_or_make_fewshot(
            train, val or [], cfg.DATASET.NUM_SHOTS, cfg.SEED, fewshot_dir or root / "split_fewshot", images,
            classes,
        )
        val = None if val is None else fewshot_val
    splits = subsample_classes(*([train, test] if val is None else [train, val, test]),
                               subsample=cfg.DATASET.SUBSAMPLE_CLASSES, labels=sorted(classes))
    train, test = splits[0], splits[-1]
    val = None if val is None else splits[1]
    check_images_exist([*train, *(val or []), *test], root)
    return train, val, test, subsampled_names(classes, cfg.DATASET.SUBSAMPLE_CLASSES)


def require_dir(path: Path, dataset: str, key: str) -> None:
    if not path.is_dir():
        raise MissingFileError(
            f"{dataset}: dataset folder {path} does not exist. Set {key} to the folder that "
            f"contains {path.name}/ (see {DATASETS_DOC}), or check with: "
            f"python tools/verify_data.py --root <DATA>"
        )


def _relative(impath: str, image_dir: Path) -> str:
    return Path(impath).relative_to(image_dir).as_posix()


def _records(items: Sequence[Datum], image_dir: Path) -> list[list]:
    return [[_relative(d.impath, image_dir), d.label, d.classname] for d in items]


def _datums(records: Sequence[Sequence], image_dir: Path, source: Path) -> list[Datum]:
    out = []
    for rec in records:
        if len(rec) != 3:
            raise DataError(f"{source}: expected [relative path, label, class name], got {rec!r}")
        impath, label, classname = rec
        out.append(Datum(impath=str(image_dir / impath), label=int(label), classname=classname))
    return out


def read_split(path: Path, image_dir: Path) -> tuple[list[Datum], list[Datum], list[Datum]]:
    """Read a CoOp split JSON ({train, val, test}: [relative path, label, class name])."""
    print(f"Reading split from {path}")
    split = read_json(path, "It should be CoOp's split file: delete it and fetch it again "
                            f"(python tools/download_splits.py --root <DATA>; see {DATASETS_DOC})")
    if not isinstance(split, dict):
        raise DataError(f"{path}: a split file is a JSON object with train, val and test lists")
    missing = {"train", "val", "test"} - set(split)
    if missing:
        raise DataError(f"{path}: split file lacks {sorted(missing)}")
    return tuple(_datums(split[k], image_dir, path) for k in ("train", "val", "test"))


def save_split(train, val, test, path: Path, image_dir: Path) -> None:
    split = {k: _records(v, image_dir) for k, v in (("train", train), ("val", val), ("test", test))}
    atomic_write_text(path, json.dumps(split, indent=4))
    print(f"Saved split to {path}")


def by_label(items: Iterable[Datum]) -> dict[int, list[Datum]]:
    groups: dict[int, list[Datum]] = defaultdict(list)
    for item in items:
        groups[item.label].append(item)
    return dict(sorted(groups.items()))


def generate_fewshot(items: Sequence[Datum], num_shots: int, rng: random.Random) -> list[Datum]:
    """K items per class (all of them when a class has fewer), classes in label order."""
    out: list[Datum] = []
    for group in by_label(items).values():
        out.extend(rng.sample(group, num_shots) if len(group) >= num_shots else group)
    return out


def short_classes(items: Sequence[Datum], num_shots: int) -> list[tuple[str, int]]:
    """(class name, image count) of the classes with fewer than `num_shots` items."""
    return [(group[0].classname, len(group)) for group in by_label(items).values() if len(group) < num_shots]


def warn_short_classes(items: Sequence[Datum], num_shots: int) -> None:
    short = short_classes(items, num_shots)
    if short:
        shown = ", ".join(f"{name!r} ({n})" for name, n in short[:10]) + (" ..." if len(short) > 10 else "")
        print(f"Warning: DATASET.NUM_SHOTS {num_shots} is more than {len(short)} of {len(by_label(items))} classes "
              f"have in train: {shown}. Those classes use all their images (Dassl's rule), so this run is not "
              f"{num_shots}-shot for them")


FEWSHOT_CACHE_FIX = ("It is a cache: delete it and rerun, and it is regenerated from the split "
                     "(the same seed picks the same images)")
STALE_FEWSHOT_FIX = ("Move it aside (or delete it) and rerun to draw the picks from the current split; results "
                     "made with the old picks are not comparable with new ones")


def split_source(train: Sequence[Datum], val: Sequence[Datum], classes: dict[int, str], image_dir: Path) -> dict:
    """What few-shot picks are drawn from: the class list with its names, and a digest of every
    train and val record (image, label, class name) of the split."""
    records = {"train": _records(train, image_dir), "val": _records(val, image_dir)}
    digest = hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()
    return {"classes": [classes[i] for i in range(len(classes))], "split_sha256": digest}


def source_differences(recorded, current: dict) -> str:
    """How the split a cache was drawn from differs from the current one, in words ("" if not)."""
    if not isinstance(recorded, dict):
        return "it records no valid source"
    old, new = recorded.get("classes"), current["classes"]
    if old != new:
        if not isinstance(old, list):
            return "it records no class list"
        if len(old) != len(new):
            return f"the split had {len(old)} classes, it has {len(new)} now"
        renamed = [f"{a!r} -> {b!r}" for a, b in zip(old, new) if a != b]
        shown = ", ".join(renamed[:3]) + (" ..." if len(renamed) > 3 else "")
        return f"{len(renamed)} classes were renamed since ({shown})"
    if recorded.get("split_sha256") != current["split_sha256"]:
        return "the split's train or val images (or their labels) changed since"
    return ""


def _cached_fewshot(cache: Path, train, val, image_dir: Path, source: dict, draw) -> tuple[list[Datum], list[Datum]]:
    """The cache's picks, if they are this split's: it records this very split (`split_source`),
    or its picks are exactly those this split gives (a cache of a split whose class names were
    edited since, or one written before caches recorded their split), and it is then bound to
    the current split. Other picks are refused, naming what changed: silently drawing new ones
    would mix two subsets in one comparison."""
    data = read_json(cache, FEWSHOT_CACHE_FIX)
    if not isinstance(data, dict) or not {"train", "val"} <= set(data):
        raise DataError(f"{cache}: a few-shot cache is a JSON object with train and val lists. {FEWSHOT_CACHE_FIX}")
    picked = _datums(data["train"], image_dir, cache), _datums(data["val"], image_dir, cache)
    for part, pool in zip(picked, (train, val)):
        known = {(d.impath, d.label) for d in pool}
        strangers = [d.impath for d in part if (d.impath, d.label) not in known]
        if strangers:
            raise DataError(f"{cache} lists {len(strangers)} images that are not in the current split with that label, "
                            f"e.g. {strangers[0]}: it was made from another split. {STALE_FEWSHOT_FIX}")
    changed = source_differences(data["source"], source) if "source" in data else "it predates split-bound caches"
    if changed:
        fresh = draw()
        if [[(d.impath, d.label) for d in part] for part in fresh] != [[(d.impath, d.label) for d in part]
                                                                        for part in picked]:
            raise DataError(f"{cache} was drawn from another version of this dataset's split ({changed}), and this "
                            f"split gives other picks. {STALE_FEWSHOT_FIX}")
        write_fewshot(cache, *fresh, image_dir, source)
        print(f"Few-shot cache {cache}: {changed}, but its picks are the current split's; bound to it")
    names = dict(enumerate(source["classes"]))  # the dataset's names, never the cache's
    return tuple([Datum(d.impath, d.label, d.domain, names[d.label]) for d in part] for part in picked)


def write_fewshot(cache: Path, train: Sequence[Datum], val: Sequence[Datum], image_dir: Path, source: dict) -> None:
    payload = {"train": _records(train, image_dir), "val": _records(val, image_dir), "source": source}
    atomic_write_text(cache, json.dumps(payload))


def load_or_make_fewshot(train, val, num_shots: int, seed: int, cache_dir: Path, image_dir: Path,
                         classes: dict[int, str] | None = None):
    """K-shot train and min(K, 4)-shot val, cached as `shot_{K}-seed_{S}.json`.

    The picks depend only on (items, K, seed): a private RNG is used and the cache holds
    paths relative to the image folder, so moving DATA keeps the same subset. The cache records
    the split it was drawn from (`split_source`: class list, names, a digest of the records) and
    is used only for that split; another one is refused naming what changed. An unseeded run
    (seed < 0, Dassl's "no fixed seed") draws its own picks and neither reads nor writes a cache.
    """
    warn_short_classes(train, num_shots)
    classes = classes if classes is not None else lab2cname_of([*train, *val])

    def draw(rng_seed: int) -> tuple[list[Datum], list[Datum]]:
        rng = random.Random(rng_seed)
        return generate_fewshot(train, num_shots, rng), generate_fewshot(val, min(num_shots, 4), rng)

    if seed < 0:
        print(f"Unseeded run (SEED {seed}): {num_shots}-shot picks drawn at random for this run only, not cached")
        return draw(distributed.broadcast_object(random.SystemRandom().randrange(2**62)))
    source = split_source(train, val, classes, image_dir)
    cache = cache_dir / f"shot_{num_shots}-seed_{seed}.json"
    if cache_dir.is_dir():
        remove_interrupted_saves(cache_dir, recursive=False, lock_of=fewshot_lock)
    with locked(fewshot_lock(cache)):  # parallel runs of one dataset draw and write the picks once
        if cache.is_file():
            print(f"Loading preprocessed few-shot data from {cache}")
            return _cached_fewshot(cache, train, val, image_dir, source, lambda: draw(seed))
        picks = draw(seed)
        write_fewshot(cache, *picks, image_dir, source)
    print(f"Saving preprocessed few-shot data to {cache}")
    return picks


def fewshot_lock(cache: Path) -> Path:
    """The lock every writer of a few-shot cache file holds (in the user cache: data folders may
    be shared or read-only)."""
    return user_cache_dir("locks", hashlib.sha1(str(cache.resolve()).encode()).hexdigest() + ".lock")


def base_new_labels(labels: Sequence[int], subsample: str) -> list[int]:
    """CoOp's base/new classes: the first ceil(n/2) sorted labels are base, the rest new."""
    if subsample not in ("all", "base", "new"):
        raise ConfigError(f"DATASET.SUBSAMPLE_CLASSES must be 'all', 'base' or 'new', got {subsample!r}")
    labels = sorted(labels)
    if subsample == "all":
        return labels
    m = math.ceil(len(labels) / 2)
    return labels[:m] if subsample == "base" else labels[m:]


def subsampled_names(classes: dict[int, str], subsample: str) -> dict[int, str]:
    """The class list of a base/new subsample, relabelled from 0 as `subsample_classes` does."""
    return {i: classes[y] for i, y in enumerate(base_new_labels(list(classes), subsample))}


def subsample_classes(*splits: Sequence[Datum], subsample: str = "all",
                      labels: Sequence[int] | None = None) -> list[list[Datum]]:
    """Base = first ceil(n/2) labels (sorted), new = the rest; relabel from 0. The labels are the
    dataset's class list when given, else those of the first split (CoOp's rule)."""
    selected = base_new_labels(labels if labels is not None else {item.label for item in splits[0]}, subsample)
    if subsample == "all":
        return [list(s) for s in splits]
    relabel = {y: i for i, y in enumerate(selected)}
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    return [
        [Datum(d.impath, relabel[d.label], d.domain, d.classname) for d in split if d.label in relabel]
        for split in splits
    ]


def random_split(items: Sequence[Datum], p_train: float, p_val: float, seed: int = 1):
    """CoOp's per-class random split (e.g. 50/20/30, or 80/20 with p_train + p_val = 1)."""
    rng = random.Random(seed)
    train, val, test = [], [], []
    for group in by_label(items).values():
        group = sorted(group, key=lambda d: d.impath)
        rng.shuffle(group)
        n_train = round(len(group) * p_train)
        n_val = round(len(group) * p_val)
        if n_val == 0 and p_val > 0:
            raise DataError(f"class {group[0].classname!r} has too few images ({len(group)}) to split")
        train += group[:n_train]
        val += group[n_train:n_train + n_val]
        test += group[n_train + n_val:]
    return train, val, test


def check_images_exist(items: Iterable[Datum], dataset_root: Path) -> None:
    """One pass over the unique paths; reports how many are missing and names the first."""
    paths = sorted({d.impath for d in items})
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        shown = "\n  ".join(missing[:5])
        raise MissingFileError(
            f"{len(missing)} of {len(paths)} images listed for {dataset_root} are missing, e.g.\n  {shown}\n"
            f"Check the folder layout in {DATASETS_DOC} or run: python tools/verify_data.py --root <DATA>"
        )


def list_visible(folder: Path) -> list[str]:
    """Sorted non-hidden entries, so nothing depends on the filesystem's listing order."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def items_from_class_folders(image_dir: Path, ignored: Iterable[str] = (), rename: dict[str, str] | None = None):
    """One class per sub-folder of `image_dir` (sorted), labels in sorted folder order."""
    rename = rename or {}
    classes = [c for c in list_visible(image_dir) if c not in set(ignored) and (image_dir / c).is_dir()]
    return [
        Datum(impath=str(image_dir / c / name), label=label, classname=rename.get(c, c))
        for label, c in enumerate(classes)
        for name in list_visible(image_dir / c)
    ]

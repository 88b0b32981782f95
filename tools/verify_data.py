"""Check the dataset folders under DATA against CoOp's layout and known split sizes.

    python tools/verify_data.py --root DATA [--dataset NAME ...] [--skip-absent]

Each dataset is loaded through its registered loader (so the split file is parsed and every
listed image is looked for), then its class count and train/val/test sizes are compared
with the figures below (CoOp's split files and DATASETS.md). Prints a table of
ok / missing / wrong per dataset and the exact fix for each problem; exits with 1 when
anything is missing or wrong.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets  # noqa: E402,F401  (registers the datasets)
from datasets.common import DiskDataset, resolve_dataset_names  # noqa: E402
from engine.config import get_cfg, merge_file  # noqa: E402
from engine.data.base import DATASET_REGISTRY, DATASETS_DOC  # noqa: E402


class Counts(NamedTuple):
    classes: int
    train: int
    val: int | None  # None: no val split (test-only datasets)
    test: int


# ImageNet validates on its test set (the official val images), as in CoOp; the test-only
# variants use their images as train_x and test.
EXPECTED: dict[str, Counts] = {
    "ImageNet": Counts(1000, 1_281_167, 50_000, 50_000),
    "Caltech101": Counts(100, 4128, 1649, 2465),
    "OxfordPets": Counts(37, 2944, 736, 3669),
    "StanfordCars": Counts(196, 6509, 1635, 8041),
    "OxfordFlowers": Counts(102, 4093, 1633, 2463),
    "Food101": Counts(101, 50500, 20200, 30300),
    "FGVCAircraft": Counts(100, 3334, 3333, 3333),
    "SUN397": Counts(397, 15880, 3970, 19850),
    "DescribableTextures": Counts(47, 2820, 1128, 1692),
    "EuroSAT": Counts(10, 13500, 5400, 8100),
    "UCF101": Counts(101, 7639, 1898, 3783),
    "ImageNetV2": Counts(1000, 10_000, None, 10_000),
    "ImageNetSketch": Counts(1000, 50_889, None, 50_889),
    "ImageNetA": Counts(200, 7500, None, 7500),
    "ImageNetR": Counts(200, 30_000, None, 30_000),
}

# Where each dataset's images come from (the full steps are in docs/DATASETS.md).
SOURCES: dict[str, str] = {
    "ImageNet": "the ILSVRC-2012 train and val images (image-net.org)",
    "Caltech101": "101_ObjectCategories.tar.gz (Caltech)",
    "OxfordPets": "images.tar.gz and annotations.tar.gz (Oxford-IIIT Pet)",
    "StanfordCars": "cars_train.tgz and cars_test.tgz (Stanford Cars)",
    "OxfordFlowers": "102flowers.tgz (Oxford 102 Flowers)",
    "Food101": "food-101.tar.gz (ETH Zurich)",
    "FGVCAircraft": "fgvc-aircraft-2013b.tar.gz, keeping its data/ folder as fgvc_aircraft/",
    "SUN397": "SUN397.tar.gz (Princeton)",
    "DescribableTextures": "dtd-r1.0.1.tar.gz (Oxford DTD)",
    "EuroSAT": "EuroSAT.zip (RGB, folder 2750/)",
    "UCF101": "UCF-101-midframes.zip (CoOp's Google Drive)",
    "ImageNetV2": "imagenetv2-matched-frequency.tar.gz",
    "ImageNetSketch": "ImageNet-Sketch (github.com/HaohanWang/ImageNet-Sketch)",
    "ImageNetA": "imagenet-a.tar (github.com/hendrycks/natural-adv-examples)",
    "ImageNetR": "imagenet-r.tar (github.com/hendrycks/imagenet-r)",
}

class Result(NamedTuple):
    dataset: str
    status: str  # ok | absent (folder not there, with --skip-absent) | missing | wrong
    counts: Counts | None
    details: str
    fix: str


def required_paths(cls) -> list[str]:
    """Paths, relative to the dataset folder, that the loader needs."""
    own = [cls.image_dir, getattr(cls, "split_file", "")]
    return [p for p in own if p] + list(getattr(cls, "required", ()))


def doc_link(name: str) -> str:
    return f"{DATASETS_DOC}#{name.lower()}"


def load(cls, name: str, root: Path):
    cfg = get_cfg()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    with contextlib.redirect_stdout(io.StringIO()):
        return cls(cfg)


def check(name: str, root: Path, skip_absent: bool = False) -> Result:
    cls = DATASET_REGISTRY.get(name)
    folder = root / cls.dataset_dir
    see = f"(see {doc_link(name)})"
    if not folder.is_dir():
        status = "absent" if skip_absent else "missing"
        return Result(name, status, None, f"no folder {folder}", f"create {folder} from {SOURCES[name]} {see}")
    split_file = getattr(cls, "split_file", "")
    download = f"python tools/download_splits.py --root {root} --dataset {name}"
    missing = [p for p in required_paths(cls) if not (folder / p).exists()]
    if missing:
        fixes = [download] if split_file in missing else []
        others = [str(folder / p) for p in missing if p != split_file]
        if others:
            fixes.append(f"get {SOURCES[name]} so that these exist: {', '.join(others)} {see}")
        return Result(name, "missing", None, "missing " + ", ".join(str(folder / p) for p in missing), "; ".join(fixes))
    try:
        ds = load(cls, name, root)
    except FileNotFoundError as e:
        first_lines = " ".join(line.strip() for line in str(e).splitlines()[:2])  # the count and one path
        return Result(name, "missing", None, first_lines, f"get {SOURCES[name]} into {folder} {see}")
    except Exception as e:  # a malformed file: report it with the rest instead of stopping
        return Result(name, "wrong", None, f"{type(e).__name__}: {' '.join(str(e).split())}", f"fix or replace the file it names {see}")
    got = Counts(ds.num_classes, len(ds.train_x), None if ds.val is None else len(ds.val), len(ds.test))
    expected = EXPECTED[name]
    if got == expected:
        return Result(name, "ok", got, "", "")
    diffs = ", ".join(f"{field} {g} (expected {e})" for field, g, e in zip(Counts._fields, got, expected) if g != e)
    if issubclass(cls, DiskDataset):
        fix = f"the image folders are incomplete or hold extra files: re-extract {SOURCES[name]} ({doc_link(name)})"
        if hasattr(cls, "cache_file"):
            fix += f", then delete {folder / cls.cache_file}"
    else:
        fix = f"{folder / split_file} is not CoOp's split: delete it, then run {download}"
    return Result(name, "wrong", got, diffs, fix)


def check_config(path: Path, root: Path) -> Result:
    """A dataset a configs/datasets yaml describes (e.g. an ImageFolder: no known sizes to compare):
    loaded as train.py loads it, which also writes its split the first time."""
    cfg = get_cfg()
    merge_file(cfg, str(path))
    cfg.DATASET.ROOT = str(root)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            ds = DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
    except Exception as e:
        status = "missing" if isinstance(e, FileNotFoundError) else "wrong"
        return Result(path.stem, status, None, " ".join(str(e).split()), f"fix what it names (see {DATASETS_DOC})")
    return Result(path.stem, "ok", Counts(ds.num_classes, len(ds.train_x), len(ds.val or []) or None, len(ds.test)), "", "")


def render(results: list[Result]) -> str:
    from tabulate import tabulate

    def cell(value):
        return "-" if value is None else value

    rows = []
    for r in results:
        c = r.counts
        counts = [cell(None), cell(None), cell(None), cell(None)] if c is None else [cell(v) for v in c]
        rows.append([r.dataset, r.status, *counts, r.details])
    table = tabulate(rows, headers=["Dataset", "Status", "Classes", "Train", "Val", "Test", "Details"], maxcolwidths=[None] * 6 + [70])
    fixes = [f"- {r.dataset}: {r.fix}" for r in results if r.status != "ok" and r.fix]
    return table + ("\n\nHow to fix:\n" + "\n".join(fixes) if fixes else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="DATA: the folder that holds the dataset folders")
    parser.add_argument("--dataset", nargs="+", action="extend", metavar="NAME", help="DATASET.NAME values or config names, e.g. OxfordPets or oxford_pets (default: all 15)")
    parser.add_argument("--skip-absent", action="store_true", help="do not fail for datasets whose folder is not there")
    parser.add_argument("--config", nargs="+", default=[], type=Path, metavar="YAML",
                        help="also check the datasets these dataset configs describe, e.g. an ImageFolder")
    args = parser.parse_args(argv)
    root = Path(args.root).expanduser().resolve()
    try:
        names = resolve_dataset_names(args.dataset, EXPECTED) if args.dataset else [] if args.config else list(EXPECTED)
    except KeyError as e:
        parser.error(str(e.args[0]))
    results = [check(name, root, args.skip_absent) for name in names] + [check_config(p, root) for p in args.config]
    print(render(results))
    bad = [r for r in results if r.status in ("missing", "wrong")]
    print(f"\n{len(bad)} of {len(results)} datasets need fixing" if bad else f"\nAll {len(results)} datasets ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

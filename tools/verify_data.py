"""Check the dataset folders under DATA against their layout and known split sizes.

    python tools/verify_data.py --root DATA [--dataset NAME ...] [--skip-absent] [--check-images]

Every registered dataset is covered: CoOp's 15, the attribute world (generated on first use,
so an absent one is only reported) and any other registered loader. Each is loaded through
its registered loader (so the split file is parsed and every listed image is looked for), then
its class count and train/val/test sizes are compared with the known figures (CoOp's split
files and DATASETS.md; the attribute world's specs). --check-images also opens and decodes
every listed image, in parallel, and lists the unreadable ones. Prints a table of
ok / absent / missing / wrong per dataset and the exact fix for each problem, every message
naming its file; exits with 1 when anything is missing or wrong.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets  # noqa: E402,F401  (registers the datasets)
from attrworld import derived  # noqa: E402
from datasets.common import DiskDataset, resolve_dataset_names  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from engine.config import get_cfg, merge_file  # noqa: E402
from engine.data.base import DATASET_REGISTRY, DATASETS_DOC  # noqa: E402
from engine.data.images import read_image  # noqa: E402
from engine.errors import DataError, UsageError, UserError  # noqa: E402


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


def generated_counts(spec: derived.DerivedSpec) -> Counts:
    classes = len(spec.classes())
    return Counts(classes, *(n * classes for n in spec.per_class))


# The attribute world is generated under DATA by the first run that uses it.
GENERATED: dict[str, Counts] = {name: generated_counts(spec) for name, spec in derived.DATASETS.items()}


def expected_counts(name: str) -> Counts | None:
    return EXPECTED.get(name) or GENERATED.get(name)


def source_of(name: str) -> str:
    if name in GENERATED:
        return "the attribute world (attrworld/): any run on it generates it"
    return SOURCES.get(name, f"the files the {name} loader reads")


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
    """The dataset as train.py would load it (all classes, all shots), its prints kept quiet."""
    cfg = get_cfg()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    with contextlib.redirect_stdout(io.StringIO()):
        return cls(cfg)


def unreadable_images(paths: list[str], jobs: int) -> list[tuple[str, str]]:
    """(path, reason) of every image that does not open and decode, checked in parallel."""

    def problem(path: str) -> str | None:
        try:
            read_image(path)  # what training reads: decoded and converted to RGB
            return None
        except DataError as e:
            return str(e.__cause__ or e)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        reasons = list(tqdm(pool.map(problem, paths), total=len(paths), desc="opening images", unit="img",
                            file=sys.stderr, disable=None))
    return [(p, r) for p, r in zip(paths, reasons) if r is not None]


def check(name: str, root: Path, skip_absent: bool = False, check_images: bool = False, jobs: int = 4) -> Result:
    cls = DATASET_REGISTRY.get(name)
    folder = root / cls.dataset_dir
    see = f"(see {doc_link(name)})"
    if not folder.is_dir():
        if name in GENERATED or getattr(cls, "OPTIONAL", False):
            return Result(name, "absent", None, f"no folder {folder} yet", "")
        status = "absent" if skip_absent else "missing"
        return Result(name, status, None, f"no folder {folder}", f"create {folder} from {source_of(name)} {see}")
    split_file = getattr(cls, "split_file", "")
    download = f"python tools/download_splits.py --root {root} --dataset {name}"
    missing = [p for p in required_paths(cls) if not (folder / p).exists()]
    if missing:
        fixes = [download] if split_file in missing and name in SOURCES else []
        others = [str(folder / p) for p in missing if p != split_file or name not in SOURCES]
        if others:
            fixes.append(f"get {source_of(name)} so that these exist: {', '.join(others)} {see}")
        return Result(name, "missing", None, "missing " + ", ".join(str(folder / p) for p in missing), "; ".join(fixes))
    try:
        ds = load(cls, name, root)
    except FileNotFoundError as e:
        first_lines = " ".join(line.strip() for line in str(e).splitlines()[:2])  # the count and one path
        return Result(name, "missing", None, first_lines, f"get {source_of(name)} into {folder} {see}")
    except UserError as e:  # a malformed file: its message names the file and the fix
        return Result(name, "wrong", None, " ".join(str(e).split()), f"as the details say {see}")
    got = Counts(ds.num_classes, len(ds.train_x), None if ds.val is None else len(ds.val), len(ds.test))
    if check_images:
        paths = sorted({d.impath for d in [*ds.train_x, *(ds.val or []), *ds.test]})
        bad = unreadable_images(paths, jobs)
        if bad:
            shown = "; ".join(f"{p} ({r})" for p, r in bad[:5]) + (" ..." if len(bad) > 5 else "")
            return Result(name, "wrong", got, f"{len(bad)} of {len(paths)} images cannot be read: {shown}",
                          f"replace those files from {source_of(name)} {see}")
    expected = expected_counts(name)
    if expected is None or got == expected:
        return Result(name, "ok", got, "" if expected else "no known sizes to compare with", "")
    diffs = ", ".join(f"{field} {g} (expected {e})" for field, g, e in zip(Counts._fields, got, expected) if g != e)
    if name in GENERATED:
        fix = f"{folder} was not made by this version of attrworld: delete it, and the next run regenerates it"
    elif issubclass(cls, DiskDataset):
        fix = f"the image folders are incomplete or hold extra files: re-extract {source_of(name)} ({doc_link(name)})"
        if hasattr(cls, "cache_file"):
            fix += f", then delete {folder / cls.cache_file}"
    else:
        fix = f"{folder / split_file} is not CoOp's split: delete it, then run {download}"
    return Result(name, "wrong", got, diffs, fix)


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
    # the full details again, unwrapped, so that every path can be copied whole
    fixes = [f"- {r.dataset}: {r.details}\n  fix: {r.fix}" for r in results if r.status in ("missing", "wrong")]
    return table + ("\n\nHow to fix:\n" + "\n".join(fixes) if fixes else "")


def check_config(path: Path, root: Path) -> Result:
    """The dataset a configs/datasets yaml describes (e.g. an ImageFolder with its own PATH), loaded
    as train.py loads it; there are no known sizes to compare with."""
    cfg = get_cfg()
    merge_file(cfg, str(path))
    cfg.DATASET.ROOT = str(root)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            ds = DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
    except UserError as e:
        status = "missing" if isinstance(e, FileNotFoundError) else "wrong"
        return Result(path.stem, status, None, " ".join(str(e).split()), f"as the details say (see {DATASETS_DOC})")
    return Result(path.stem, "ok", Counts(ds.num_classes, len(ds.train_x), None if ds.val is None else len(ds.val),
                                          len(ds.test)), "", "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="DATA: the folder that holds the dataset folders")
    parser.add_argument("--dataset", nargs="+", action="extend", metavar="NAME",
                        help="DATASET.NAME values or config names, e.g. OxfordPets or oxford_pets "
                             "(default: every registered dataset)")
    parser.add_argument("--skip-absent", action="store_true", help="do not fail for datasets whose folder is not there")
    parser.add_argument("--check-images", action="store_true", help="open and decode every listed image")
    parser.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1), help="parallel image checks")
    parser.add_argument("--config", nargs="+", default=[], type=Path, metavar="YAML",
                        help="check only the datasets these dataset configs describe (e.g. an ImageFolder's)")
    args = parser.parse_args(argv)
    root = Path(args.root).expanduser().resolve()
    if not root.is_dir():
        raise UsageError(f"--root {root} is not a folder; give the folder that holds the dataset folders (DATA)")
    names = DATASET_REGISTRY.names()
    if args.config and not args.dataset:
        names = []
    elif args.dataset:
        try:
            names = resolve_dataset_names(args.dataset, names)
        except KeyError as e:
            parser.error(str(e.args[0]))
    else:
        names = [n for n in EXPECTED] + [n for n in names if n not in EXPECTED]
    results = [check(name, root, args.skip_absent, args.check_images, args.jobs) for name in names]
    results += [check_config(path, root) for path in args.config]
    print(render(results))
    bad = [r for r in results if r.status in ("missing", "wrong")]
    print(f"\n{len(bad)} of {len(results)} datasets need fixing" if bad else f"\nAll {len(results)} datasets ok")
    return 1 if bad else 0


if __name__ == "__main__":
    run_cli(main)

"""Fetch the split files CoOp publishes on Google Drive into the dataset folders under DATA.

    python tools/download_splits.py --root DATA [--dataset NAME ...]

Files that are already there are not downloaded again. The SHA-256 of each file is recorded
in DATA/split_manifest.json the first time it is seen and compared on every later run, so a
file that changed (or a re-download that differs) is reported instead of used. A download
goes to a temporary folder beside its destination and is renamed into place only once it is
complete and readable: a failed download leaves no partial file. Exits with 1 when any file
failed or does not match the manifest.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datasets.common import resolve_dataset_names  # noqa: E402
from engine.cli import run_cli  # noqa: E402
from engine.io import atomic_write_text  # noqa: E402

MANIFEST = "split_manifest.json"

# CoOp's classnames.txt (CLIP's ImageNet class names); the ImageNet variants use a copy of it.
IMAGENET_CLASSNAMES_ID = "1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"

# DATASET.NAME -> [(path under DATA, Google Drive file id)], from CoOp's DATASETS.md.
# FGVCAircraft has none: its split files come with the dataset. UCF-101-midframes.zip holds
# images, not a split; get it by hand (see docs/DATASETS.md).
FILES: dict[str, list[tuple[str, str]]] = {
    "ImageNet": [("imagenet/classnames.txt", IMAGENET_CLASSNAMES_ID)],
    "Caltech101": [("caltech-101/split_zhou_Caltech101.json", "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN")],
    "OxfordPets": [("oxford_pets/split_zhou_OxfordPets.json", "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs")],
    "StanfordCars": [("stanford_cars/split_zhou_StanfordCars.json", "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT")],
    "OxfordFlowers": [
        ("oxford_flowers/split_zhou_OxfordFlowers.json", "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT"),
        ("oxford_flowers/cat_to_name.json", "1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0"),
    ],
    "Food101": [("food-101/split_zhou_Food101.json", "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl")],
    "FGVCAircraft": [],
    "SUN397": [("sun397/split_zhou_SUN397.json", "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq")],
    "DescribableTextures": [("dtd/split_zhou_DescribableTextures.json", "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x")],
    "EuroSAT": [("eurosat/split_zhou_EuroSAT.json", "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o")],
    "UCF101": [("ucf101/split_zhou_UCF101.json", "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y")],
    "ImageNetV2": [("imagenetv2/classnames.txt", IMAGENET_CLASSNAMES_ID)],
    "ImageNetSketch": [("imagenet-sketch/classnames.txt", IMAGENET_CLASSNAMES_ID)],
    "ImageNetA": [("imagenet-adversarial/classnames.txt", IMAGENET_CLASSNAMES_ID)],
    "ImageNetR": [("imagenet-rendition/classnames.txt", IMAGENET_CLASSNAMES_ID)],
}

FAILED = ("failed", "changed", "mismatch")


class Outcome(NamedTuple):
    dataset: str
    path: str
    status: str  # downloaded | recorded | ok | failed | changed | mismatch
    sha256: str
    note: str


def drive_url(file_id: str) -> str:
    return f"https://drive.google.com/file/d/{file_id}/view"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_content(path: Path) -> None:
    """Reject what Google Drive sends instead of the file (an HTML page) or a truncated file."""
    if path.stat().st_size == 0:
        raise ValueError("the downloaded file is empty")
    if path.suffix == ".json":
        with open(path) as f:
            data = json.load(f)  # raises on HTML or truncated JSON
        if path.name.startswith("split_") and not {"train", "val", "test"} <= set(data):
            raise ValueError("the split file lacks train/val/test")
    else:
        first = path.read_text(errors="replace").lstrip()[:1]
        if first == "<":
            raise ValueError("got an HTML page instead of the file")


def download(file_id: str, dest: Path) -> None:
    """gdown into a temporary folder beside `dest`, then rename; nothing is left on failure."""
    import gdown

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".download", dir=dest.parent))
    try:
        tmp = tmp_dir / dest.name
        result = gdown.download(id=file_id, output=str(tmp), quiet=True)
        if result is None or not tmp.is_file():
            raise RuntimeError("gdown returned no file")
        check_content(tmp)
        tmp.replace(dest)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not path.is_file():
        return {"files": {}}
    with open(path) as f:
        return json.load(f)


def fetch(dataset: str, rel: str, file_id: str, root: Path, manifest: dict) -> Outcome:
    dest = root / rel
    known = manifest["files"].get(rel, {}).get("sha256")
    if dest.is_file():
        digest = sha256_of(dest)
        if known is None:
            manifest["files"][rel] = {"sha256": digest, "gdrive_id": file_id}
            return Outcome(dataset, rel, "recorded", digest, "already there; SHA-256 recorded")
        if digest != known:
            note = (f"differs from the SHA-256 recorded in {root / MANIFEST} ({known[:12]}); delete {dest} "
                    f"and run this again to re-download it, or drop its manifest entry if the new file is intended")
            return Outcome(dataset, rel, "changed", digest, note)
        return Outcome(dataset, rel, "ok", digest, "matches the manifest")
    manual = f"download it by hand from {drive_url(file_id)} to {dest}"
    try:
        download(file_id, dest)
    except Exception as e:  # gdown raises several types (network, quota, parsing)
        return Outcome(dataset, rel, "failed", "", f"{type(e).__name__}: {e}; {manual}")
    digest = sha256_of(dest)
    if known is not None and digest != known:
        dest.unlink()
        note = f"the download differs from the recorded SHA-256 ({known[:12]}) and was discarded; {manual}"
        return Outcome(dataset, rel, "mismatch", digest, note)
    manifest["files"][rel] = {"sha256": digest, "gdrive_id": file_id}
    return Outcome(dataset, rel, "downloaded", digest, "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="DATA: the folder that holds the dataset folders")
    parser.add_argument("--dataset", nargs="+", action="extend", metavar="NAME", help="DATASET.NAME values or config names, e.g. OxfordPets or oxford_pets (default: all)")
    args = parser.parse_args(argv)
    root = Path(args.root).expanduser().resolve()
    try:
        names = resolve_dataset_names(args.dataset, FILES) if args.dataset else list(FILES)
    except KeyError as e:
        parser.error(str(e.args[0]))
    root.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(root)
    outcomes = []
    for name in names:
        if not FILES[name]:
            outcomes.append(Outcome(name, "-", "none", "", "nothing to fetch: the split comes with the dataset"))
        for rel, file_id in FILES[name]:
            outcomes.append(fetch(name, rel, file_id, root, manifest))
            atomic_write_text(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    from tabulate import tabulate

    rows = [[o.dataset, o.path, o.status, o.sha256[:16]] for o in outcomes]
    print(tabulate(rows, headers=["Dataset", "File", "Status", "SHA-256"]))
    notes = [f"- {o.dataset} {o.path}: {o.note}" for o in outcomes if o.note and o.status not in ("ok", "downloaded")]
    if notes:
        print("\n" + "\n".join(notes))
    failed = [o for o in outcomes if o.status in FAILED]
    if failed:
        print(f"\n{len(failed)} file(s) not usable; see the notes above")
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(main)

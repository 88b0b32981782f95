"""tools/verify_data.py and tools/download_splits.py (gdown faked: no network here)."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.replica import COOP_SPLITS, Images, aircraft_tree, class_folders, load_tool, split_replica

os.environ.setdefault("HF_HUB_OFFLINE", "1")

verify = load_tool("verify_data")
download = load_tool("download_splits")


@pytest.fixture
def images(tmp_path):
    return Images(tmp_path / "src")


def full_size_aircraft(root, images):
    """100 variants, 3334 / 3333 / 3333 images: FGVCAircraft's real sizes."""
    counts = {f"variant {i:03d}": (34 if i < 34 else 33, 34 if i < 33 else 33, 34 if i < 33 else 33) for i in range(100)}
    aircraft_tree(root, counts, images)


def row(output, dataset):
    return next(line.split() for line in output.splitlines() if line.startswith(dataset + " "))


# --- verify_data -------------------------------------------------------------------------

def test_verify_ok_at_known_sizes(tmp_path, images, capsys):
    full_size_aircraft(tmp_path, images)
    assert verify.main(["--root", str(tmp_path), "--dataset", "FGVCAircraft"]) == 0
    assert row(capsys.readouterr().out, "FGVCAircraft") == ["FGVCAircraft", "ok", "100", "3334", "3333", "3333"]


@pytest.mark.skipif(not COOP_SPLITS.is_dir(), reason=f"CoOp split files not found at {COOP_SPLITS}")
def test_verify_ok_for_real_dtd_split(tmp_path, images, capsys):
    split_replica(COOP_SPLITS / "split_zhou_DescribableTextures.json", tmp_path / "dtd", "images", images)
    assert verify.main(["--root", str(tmp_path), "--dataset", "dtd"]) == 0  # names are case-insensitive
    assert row(capsys.readouterr().out, "DescribableTextures")[:6] == ["DescribableTextures", "ok", "47", "2820", "1128", "1692"]


def test_verify_reports_missing_images_by_count(tmp_path, images, capsys):
    full_size_aircraft(tmp_path, images)
    for image_id in (1000000, 1000001, 1005000):
        (tmp_path / "fgvc_aircraft" / "images" / f"{image_id}.jpg").unlink()
    assert verify.main(["--root", str(tmp_path), "--dataset", "FGVCAircraft"]) == 1
    out = capsys.readouterr().out
    assert row(out, "FGVCAircraft")[1] == "missing"
    assert "3 of 10000 images" in out and "1000000.jpg" in out
    assert "fgvc-aircraft-2013b.tar.gz" in out.split("How to fix:")[1]


def test_verify_wrong_sizes_point_at_the_split_file(tmp_path, images, capsys):
    class_folders(tmp_path / "caltech-101" / "101_ObjectCategories", {"accordion": 10, "anchor": 10}, images)
    split = {"train": [["accordion/accordion_0000.jpg", 0, "accordion"], ["anchor/anchor_0000.jpg", 1, "anchor"]],
             "val": [["accordion/accordion_0001.jpg", 0, "accordion"]], "test": [["anchor/anchor_0001.jpg", 1, "anchor"]]}
    (tmp_path / "caltech-101" / "split_zhou_Caltech101.json").write_text(json.dumps(split))
    assert verify.main(["--root", str(tmp_path), "--dataset", "Caltech101"]) == 1
    out = capsys.readouterr().out
    assert row(out, "Caltech101")[:6] == ["Caltech101", "wrong", "2", "2", "1", "1"]
    assert "classes 2 (expected 100)" in out and "train 2 (expected 4128)" in out
    fix = out.split("How to fix:")[1]
    assert f"python tools/download_splits.py --root {tmp_path} --dataset Caltech101" in fix


def test_verify_missing_split_file_is_not_created(tmp_path, images, capsys):
    class_folders(tmp_path / "dtd" / "images", {"banded": 10}, images)
    assert verify.main(["--root", str(tmp_path), "--dataset", "DescribableTextures"]) == 1
    out = capsys.readouterr().out
    assert row(out, "DescribableTextures")[1] == "missing"
    assert f"python tools/download_splits.py --root {tmp_path} --dataset DescribableTextures" in out
    assert not (tmp_path / "dtd" / "split_zhou_DescribableTextures.json").exists()


def test_verify_all_absent_and_skip_absent(tmp_path, images, capsys):
    assert verify.main(["--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert all(row(out, name)[1] == "missing" for name in verify.EXPECTED)
    assert f"create {tmp_path / 'imagenet'}" in out
    full_size_aircraft(tmp_path, images)
    assert verify.main(["--root", str(tmp_path), "--skip-absent"]) == 0
    out = capsys.readouterr().out
    assert row(out, "FGVCAircraft")[1] == "ok" and row(out, "SUN397")[1] == "absent"


def test_verify_rejects_unknown_dataset(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        verify.main(["--root", str(tmp_path), "--dataset", "Caltech"])
    assert e.value.code == 2 and "Did you mean 'Caltech101'" in capsys.readouterr().err


# --- download_splits ---------------------------------------------------------------------

DTD_ID = "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x"  # CoOp's DATASETS.md link for the DTD split


@pytest.fixture
def good_split(tmp_path):
    path = tmp_path / "published.json"
    path.write_text(json.dumps({"train": [["banded/b_1.jpg", 0, "banded"]], "val": [], "test": []}))
    return path


@pytest.fixture
def fake_gdown(monkeypatch):
    """gdown.download replaced: serves local files by Drive id, or fails after a partial write."""
    import gdown

    calls, served = [], {}

    def fake(url=None, output=None, quiet=False, id=None, **kw):
        calls.append(id)
        source = served.get(id)
        if source == "partial":
            with open(output, "w") as f:
                f.write('{"train": [')
            raise RuntimeError("connection reset")
        if source is None:
            return None
        shutil.copyfile(source, output)
        return output

    monkeypatch.setattr(gdown, "download", fake)
    return calls, served


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_places_file_and_records_sha(tmp_path, good_split, fake_gdown, capsys):
    calls, served = fake_gdown
    served[DTD_ID] = good_split
    data = tmp_path / "data"
    assert download.main(["--root", str(data), "--dataset", "DescribableTextures"]) == 0
    dest = data / "dtd" / "split_zhou_DescribableTextures.json"
    assert dest.read_bytes() == good_split.read_bytes() and calls == [DTD_ID]
    manifest = json.loads((data / "split_manifest.json").read_text())
    assert manifest["files"]["dtd/split_zhou_DescribableTextures.json"]["sha256"] == sha256(good_split)
    assert row(capsys.readouterr().out, "DescribableTextures")[2:4] == ["downloaded", sha256(good_split)[:16]]
    assert download.main(["--root", str(data), "--dataset", "dtd"]) == 0
    assert calls == [DTD_ID]  # present and matching the manifest: not fetched again
    assert row(capsys.readouterr().out, "DescribableTextures")[2] == "ok"
    dest.write_text(dest.read_text().replace("banded", "bumpy"))
    assert download.main(["--root", str(data), "--dataset", "DescribableTextures"]) == 1
    out = capsys.readouterr().out
    assert "changed" in out and str(dest) in out


def test_failed_download_leaves_nothing(tmp_path, fake_gdown, capsys):
    calls, served = fake_gdown
    served[DTD_ID] = "partial"
    data = tmp_path / "data"
    assert download.main(["--root", str(data), "--dataset", "DescribableTextures"]) == 1
    assert list((data / "dtd").iterdir()) == []  # no partial file, no temporary folder
    assert json.loads((data / "split_manifest.json").read_text())["files"] == {}
    out = capsys.readouterr().out
    assert "connection reset" in out and f"https://drive.google.com/file/d/{DTD_ID}/view" in out
    served.pop(DTD_ID)  # gdown returning None (its other failure mode)
    assert download.main(["--root", str(data), "--dataset", "DescribableTextures"]) == 1
    assert list((data / "dtd").iterdir()) == []


def test_html_page_is_rejected(tmp_path, fake_gdown):
    calls, served = fake_gdown
    page = tmp_path / "quota.html"
    page.write_text("<!DOCTYPE html><html>Too many users have viewed or downloaded this file</html>")
    served["1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF"] = page
    data = tmp_path / "data"
    assert download.main(["--root", str(data), "--dataset", "ImageNetA"]) == 1
    assert list((data / "imagenet-adversarial").iterdir()) == []


def test_download_differing_from_manifest_is_discarded(tmp_path, good_split, fake_gdown, capsys):
    calls, served = fake_gdown
    served[DTD_ID] = good_split
    data = tmp_path / "data"
    data.mkdir()
    rel = "dtd/split_zhou_DescribableTextures.json"
    (data / "split_manifest.json").write_text(json.dumps({"files": {rel: {"sha256": "0" * 64, "gdrive_id": DTD_ID}}}))
    assert download.main(["--root", str(data), "--dataset", "DescribableTextures"]) == 1
    assert not (data / rel).exists() and "mismatch" in capsys.readouterr().out


def test_split_table_matches_the_loaders():
    """Every split-JSON dataset of the 15 has a download entry at its loader's path."""
    import datasets  # noqa: F401
    from engine.data.base import DATASET_REGISTRY, SplitDataset

    assert sorted(download.FILES) == sorted(verify.EXPECTED)
    for name in download.FILES:
        cls = DATASET_REGISTRY.get(name)
        paths = [rel for rel, _ in download.FILES[name]]
        assert all(rel.split("/")[0] == cls.dataset_dir for rel in paths), name
        if issubclass(cls, SplitDataset):
            assert f"{cls.dataset_dir}/{cls.split_file}" in paths, name


def test_file_already_there_is_recorded_not_fetched(tmp_path, good_split, fake_gdown, capsys):
    calls, _ = fake_gdown
    dest = tmp_path / "data" / "dtd" / "split_zhou_DescribableTextures.json"
    dest.parent.mkdir(parents=True)
    shutil.copyfile(good_split, dest)
    assert download.main(["--root", str(tmp_path / "data"), "--dataset", "DescribableTextures"]) == 0
    assert calls == [] and row(capsys.readouterr().out, "DescribableTextures")[2] == "recorded"
    manifest = json.loads((tmp_path / "data" / "split_manifest.json").read_text())
    assert manifest["files"]["dtd/split_zhou_DescribableTextures.json"]["sha256"] == sha256(good_split)


def test_docs_table_matches_verifier_and_loaders():
    import datasets  # noqa: F401
    from engine.data.base import DATASET_REGISTRY

    doc = (Path(__file__).resolve().parents[1] / "docs" / "DATASETS.md").read_text()
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and cells[0] in verify.EXPECTED:
            rows[cells[0]] = cells
    assert sorted(rows) == sorted(verify.EXPECTED)
    for name, (_, folder, classes, train, val, test) in rows.items():
        assert folder.strip("`") == DATASET_REGISTRY.get(name).dataset_dir
        number = lambda cell: None if cell == "–" else int(cell.split()[0].replace(",", ""))  # noqa: E731
        expected = verify.EXPECTED[name]
        assert (int(classes), number(test)) == (expected.classes, expected.test), name
        if expected.val is not None:
            assert (number(train), number(val)) == (expected.train, expected.val), name


def test_verify_covers_the_attribute_world_and_opens_every_image(tmp_path, capsys):
    from attrworld import derived

    assert verify.main(["--root", str(tmp_path), "--dataset", "AttrTextureShape"]) == 0
    assert row(capsys.readouterr().out, "AttrTextureShape")[1] == "absent"  # generated on first use: not an error
    folder = derived.generate(derived.TEXTURE_SHAPE, tmp_path)
    assert verify.main(["--root", str(tmp_path), "--dataset", "AttrTextureShape", "--check-images"]) == 0
    assert row(capsys.readouterr().out, "AttrTextureShape")[:6] == ["AttrTextureShape", "ok", "32", "640", "160", "480"]
    broken = sorted((folder / "images").rglob("*.png"))[7]
    broken.write_bytes(broken.read_bytes()[:200])  # a truncated PNG still exists, so only opening it finds it
    assert verify.main(["--root", str(tmp_path), "--dataset", "AttrTextureShape"]) == 0
    capsys.readouterr()
    assert verify.main(["--root", str(tmp_path), "--dataset", "AttrTextureShape", "--check-images"]) == 1
    out = capsys.readouterr().out
    assert row(out, "AttrTextureShape")[1] == "wrong"
    assert f"- AttrTextureShape: 1 of 1280 images cannot be read: {broken} (" in out.split("How to fix:")[1]


def test_verify_names_a_broken_split_file(tmp_path, images, capsys):
    class_folders(tmp_path / "dtd" / "images", {"banded": 2}, images)
    split = tmp_path / "dtd" / "split_zhou_DescribableTextures.json"
    split.write_text('{"train": [')
    assert verify.main(["--root", str(tmp_path), "--dataset", "DescribableTextures"]) == 1
    out = capsys.readouterr().out
    assert row(out, "DescribableTextures")[1] == "wrong"
    assert f"- DescribableTextures: {split} is not valid JSON: Expecting value at line 1" in out.split("How to fix:")[1]

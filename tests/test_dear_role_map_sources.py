"""DeAR without ImageNet: a role map from a file or a URL pinned by its SHA-256 (fetched once into
the user cache, refused on other bytes), bound to the backbone weights it was computed on; and the
headline scripts, end to end, on generated data with no ImageNet folder."""
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from engine.errors import ConfigError, DataError
from headroles.rolemap import RoleMapError
from tests.minidata import make_caltech_like
from train import main, parse_args, setup_cfg
from trainers.dear.trainer import DeAR

REPO = Path(__file__).resolve().parents[1]
ROLES = [{"role": "attribute", "attribute": "color"}, {"role": "generalization"}, {"role": "mixed"},
         {"role": "attribute", "attribute": "shape"}]
RANDOM_TINY = "random-init:tiny-test"  # backbone.weights_fingerprint("tiny-test", pretrained=False)
TINY = ["MODEL.BACKBONE.NAME", "tiny-test", "MODEL.BACKBONE.PRETRAINED", "False", "INPUT.SIZE", "(32, 32)",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "8", "TRAINER.DEAR.PREC", "fp32",
        "TRAINER.DEAR.J", "1", "OPTIM.MAX_EPOCH", "1"]


def write_map(path, weights=RANDOM_TINY):
    heads = [{"layer": layer, "head": h, **r} for layer in (1, 2) for h, r in enumerate(ROLES)]
    payload = {"backbone": "tiny-test", **({"weights": weights} if weights else {}), "heads": heads}
    path.write_text(json.dumps(payload))
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_caltech_like(tmp_path_factory.mktemp("data"))  # Caltech101's layout; no imagenet/ beside it


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def argv(root, out, *opts, sub="base"):
    return ["--root", str(root), "--seed", "1", "--trainer", "DeAR", "--dataset-config-file",
            "configs/datasets/caltech101.yaml", "--config-file", "configs/trainers/DeAR/vit_b16.yaml",
            "--output-dir", str(out), *TINY, "DATASET.SUBSAMPLE_CLASSES", sub, *opts]


def build(args):
    return DeAR(setup_cfg(parse_args(args)))


def test_a_url_pinned_by_sha256_is_fetched_once_and_copied_into_the_run(data_root, tmp_path, cache, capsys):
    source, sha = write_map(tmp_path / "published.json")
    url = source.as_uri()
    trainer = build(argv(data_root, tmp_path / "a", "TRAINER.DEAR.ROLE_MAP", url, "TRAINER.DEAR.ROLE_MAP_SHA256", sha))
    fetched = cache / "role_maps" / f"{sha}.json"
    assert fetched.read_bytes() == source.read_bytes() == (tmp_path / "a" / "role_map.json").read_bytes()
    assert f"Role map {url}: fetched into {fetched} (SHA-256 checked)" in capsys.readouterr().out
    assert trainer.role_map.counts() == {"attribute": 4, "generalization": 2, "mixed": 2}
    source.unlink()  # fetched once: later runs read the user cache
    build(argv(data_root, tmp_path / "b", "TRAINER.DEAR.ROLE_MAP", url, "TRAINER.DEAR.ROLE_MAP_SHA256", sha.upper()))
    assert "fetched" not in capsys.readouterr().out


def test_other_bytes_than_the_pinned_ones_are_refused_and_not_kept(data_root, tmp_path, cache):
    source, sha = write_map(tmp_path / "published.json")
    wrong = "ab" * 32
    with pytest.raises(DataError, match=rf"Refused the role map fetched from {source.as_uri()}: its SHA-256 is {sha}, "
                                        rf"not the pinned {wrong}; nothing was written"):
        build(argv(data_root, tmp_path / "a", "TRAINER.DEAR.ROLE_MAP", source.as_uri(), "TRAINER.DEAR.ROLE_MAP_SHA256", wrong))
    assert not (cache / "role_maps").exists() or not list((cache / "role_maps").iterdir())
    (cache / "role_maps").mkdir(parents=True, exist_ok=True)
    (cache / "role_maps" / f"{sha}.json").write_text('{"heads": []}')  # a damaged copy under the right name
    build(argv(data_root, tmp_path / "b", "TRAINER.DEAR.ROLE_MAP", source.as_uri(), "TRAINER.DEAR.ROLE_MAP_SHA256", sha))
    assert (cache / "role_maps" / f"{sha}.json").read_bytes() == source.read_bytes()  # fetched again, not used
    with pytest.raises(DataError, match=rf"Refused role map {source}: its SHA-256 is {sha}, not the pinned"):
        build(argv(data_root, tmp_path / "c", "TRAINER.DEAR.ROLE_MAP", str(source), "TRAINER.DEAR.ROLE_MAP_SHA256", wrong))


@pytest.mark.parametrize("role_map, sha, message", [
    ("https://example.org/vit-b16.json", "", r"is a URL: pin it with TRAINER.DEAR.ROLE_MAP_SHA256"),
    ("http://example.org/vit-b16.json", "a" * 64, r"only https:// and file:// URLs are fetched"),
    ("https://example.org/vit-b16.json", "abc", r"ROLE_MAP_SHA256 must be 64 hexadecimal digits"),
    ("global", "a" * 64, r"ROLE_MAP_SHA256 pins a role map file or URL; ROLE_MAP global is computed"),
    ("auto", "a" * 64, r"ROLE_MAP_SHA256 pins a role map file or URL; ROLE_MAP auto is computed"),
])
def test_pin_mistakes_are_config_errors(data_root, tmp_path, cache, role_map, sha, message):
    with pytest.raises(ConfigError, match=message):
        build(argv(data_root, tmp_path / "a", "TRAINER.DEAR.ROLE_MAP", role_map, "TRAINER.DEAR.ROLE_MAP_SHA256", sha))


def test_a_map_of_other_weights_is_refused_one_without_a_fingerprint_is_noted(data_root, tmp_path, cache, capsys):
    other, _ = write_map(tmp_path / "vit.json", weights="sha256:" + "b" * 64)
    with pytest.raises(RoleMapError, match=r"vit.json was computed on other backbone weights \(tiny-test, sha256:b{64}\) "
                                           r"than this run's \(MODEL.BACKBONE.NAME tiny-test, random-init:tiny-test\)"):
        build(argv(data_root, tmp_path / "a", "TRAINER.DEAR.ROLE_MAP", str(other)))
    bare, _ = write_map(tmp_path / "bare.json", weights=None)
    build(argv(data_root, tmp_path / "b", "TRAINER.DEAR.ROLE_MAP", str(bare)))
    assert "bare.json records no backbone weights fingerprint (a hand-written map?)" in capsys.readouterr().out


def test_a_refused_map_leaves_no_log_in_the_run_folder(data_root, tmp_path, cache, capsys):
    """train.py checks the role map's source before it logs, so the corrected rerun logs to log.txt."""
    source, sha = write_map(tmp_path / "published.json")
    out = tmp_path / "run"
    with pytest.raises(DataError, match="Refused the role map"):
        main(argv(data_root, out, "TRAINER.DEAR.ROLE_MAP", source.as_uri(), "TRAINER.DEAR.ROLE_MAP_SHA256", "cd" * 32))
    assert not list(out.glob("log.txt*"))
    main(argv(data_root, out, "TRAINER.DEAR.ROLE_MAP", source.as_uri(), "TRAINER.DEAR.ROLE_MAP_SHA256", sha))
    assert [p.name for p in out.glob("log.txt*")] == ["log.txt"]


# ---- the headline scripts, end to end ------------------------------------------------------------
def script(name, *args, env):
    return subprocess.run(["bash", str(REPO / "scripts" / "dear" / name), *args], env=env, capture_output=True, text=True)


def test_dear_base2new_scripts_without_imagenet_with_a_published_role_map(data_root, tmp_path):
    """`base2new_train.sh caltech101 1 <override>` then `base2new_test.sh`: generated Caltech101 and
    no ImageNet; the role map by a file:// URL and its SHA-256; the test ends with Base / New / HM."""
    source, sha = write_map(tmp_path / "published.json")
    env = {**os.environ, "DATA": str(data_root), "OUTPUT": str(tmp_path / "out"), "SHOTS": "2",
           "PROMPTLAB_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    pinned = ["TRAINER.DEAR.ROLE_MAP", source.as_uri(), "TRAINER.DEAR.ROLE_MAP_SHA256", sha]
    refused = script("base2new_train.sh", "caltech101", "1", *TINY, *pinned[:3], "f" * 64, env=env)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith(f"error: Refused the role map fetched from {source.as_uri()}: its SHA-256 is {sha}")
    base_dir = tmp_path / "out/base2new/train_base/caltech101/shots_2/DeAR/vit_b16/seed1"
    assert not list(base_dir.glob("log.txt*"))

    train = script("base2new_train.sh", "caltech101", "1", *TINY, *pinned, env=env)
    assert train.returncode == 0, train.stderr
    test = script("base2new_test.sh", "caltech101", "1", *TINY, env=env)
    assert test.returncode == 0, test.stderr
    base = json.loads((base_dir / "results.json").read_text())
    new_dir = tmp_path / "out/base2new/test_new/caltech101/shots_2/DeAR/vit_b16/seed1"
    new = json.loads((new_dir / "results.json").read_text())
    b, n = (r["evaluations"]["test"]["metrics"]["accuracy"] for r in (base, new))
    assert base["config"]["TRAINER"]["DEAR"]["ROLE_MAP"] == source.as_uri() and new["subsample"] == "new"
    assert test.stdout.rstrip().splitlines()[-1] == (
        f"Result: Caltech101 (new classes), seed 1: accuracy {n:.2f}%; base-to-new: Base {b:.2f} / New {n:.2f} / "
        f"HM {2 * b * n / (b + n):.2f} (Base from {base_dir / 'results.json'})")
    assert (new_dir / "role_map.json").read_bytes() == source.read_bytes()
    assert "Note: TRAINER.DEAR.ROLE_MAP" not in (new_dir / "log.txt").read_text()  # the trained map is the one used


def test_a_fetch_killed_mid_write_leaves_nothing_the_next_fetch_keeps(data_root, tmp_path, cache):
    source, sha = write_map(tmp_path / "published.json")
    folder = cache / "role_maps"
    folder.mkdir(parents=True)
    dead = folder / f".{sha}.json.k1ll3d.tmp"  # atomic_write's temp name, its writer gone
    dead.write_bytes(b'{"hea')
    build(argv(data_root, tmp_path / "a", "TRAINER.DEAR.ROLE_MAP", source.as_uri(), "TRAINER.DEAR.ROLE_MAP_SHA256", sha))
    assert not dead.exists() and (folder / f"{sha}.json").read_bytes() == source.read_bytes()

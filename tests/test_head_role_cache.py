"""headroles.store: an analysis is computed once per key, the key holds everything that changes
it, and a cached file made for another backbone, image set or setting is never used."""
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import headroles.store as store
from backbone import load_clip
from headroles.analysis import AnalysisSettings
from headroles.pool import DEFAULT_POOL
from headroles.store import AnalysisInput, cache_key, cache_path, cached_analysis

ATTRS = ("color", "shape", "texture", "object", "position")
WEIGHTS_A, WEIGHTS_B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return load_clip("tiny-test", pretrained=False)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "head_roles"


@pytest.fixture()
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return sorted(str(p) for p in folder.iterdir())


@pytest.fixture()
def computed(monkeypatch):
    """Counts the analyses actually run."""
    calls = []
    real = store.run_analysis

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "run_analysis", counting)
    return calls


def request(images, weights=WEIGHTS_A, pool=DEFAULT_POOL, n_texts=4, **scope):
    settings = AnalysisSettings(layers=(1, 2), attributes=ATTRS, n_texts=n_texts)
    return AnalysisInput("tiny-test", weights, tuple(images), pool, settings, {"kind": "global", **scope})


def test_analysis_is_computed_once_then_read_from_the_user_cache(clip, images, cache, computed, capsys):
    inp = request(images)
    path = cached_analysis(clip, inp)
    assert path.parent == cache and path.name.startswith("tiny-test__global__")
    payload = json.loads(path.read_text())
    assert payload["cache_key"] == cache_key(inp) and payload["images"] == 8 and path.with_suffix(".png").is_file()
    assert cached_analysis(clip, inp) == path and computed == [1]
    out = capsys.readouterr().out
    assert "computing the head analysis of tiny-test once on 8 images" in out and "using the cached analysis" in out


def test_every_input_of_the_analysis_is_in_its_key(images, tmp_path, cache):
    pool = tmp_path / "pool.tsv"
    shutil.copyfile(DEFAULT_POOL, pool)
    base = cache_path(cache_key(request(images, pool=pool)))
    variants = {
        "weights": request(images, weights=WEIGHTS_B, pool=pool),
        "fewer images": request(images[:-1], pool=pool),
        "order": request(images[::-1], pool=pool),
        "setting": request(images, pool=pool, n_texts=5),
        "scope": request(images, pool=pool, seed=2),
    }
    paths = {name: cache_path(cache_key(inp)) for name, inp in variants.items()}
    with open(pool, "a") as f:
        f.write("color\ta teal spot\n")
    paths["pool content"] = cache_path(cache_key(request(images, pool=pool)))
    touched = cache_path(cache_key(request(images, pool=pool)))
    stat = os.stat(images[0])
    os.utime(images[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert cache_path(cache_key(request(images, pool=pool))) == touched  # a new mtime alone is the same input
    replace_keeping_size_and_mtime(images[0], images[1])
    paths["a replaced image (same size and mtime)"] = cache_path(cache_key(request(images, pool=pool)))
    assert base not in paths.values() and len(set(paths.values())) == len(paths), paths


def replace_keeping_size_and_mtime(path, source):
    """Other bytes of the same size under the old modification time, as `cp -p` or `rsync -a` leave it."""
    stat = os.stat(path)
    data = bytearray(Path(source).read_bytes()[:stat.st_size].ljust(stat.st_size, b"\0"))
    assert bytes(data) != Path(path).read_bytes()
    Path(path).write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (os.stat(path).st_size, os.stat(path).st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)


def test_a_file_from_another_backbone_or_image_set_is_not_used(clip, images, cache, computed, capsys):
    first = cached_analysis(clip, request(images))
    for other in (request(images, weights=WEIGHTS_B), request(images[:4])):
        target = cache_path(cache_key(other))
        assert target != first
        shutil.copyfile(first, target)  # the other analysis's file, under this one's name
        shutil.copyfile(first.with_suffix(".png"), target.with_suffix(".png"))
        assert cached_analysis(clip, other) == target
        assert json.loads(target.read_text())["cache_key"] == cache_key(other)
        assert "is not this analysis (stale, damaged or from another backbone / image set); recomputing it" in capsys.readouterr().out
    assert computed == [1, 1, 1]


def test_damaged_cache_file_is_recomputed(clip, images, cache, computed):
    path = cached_analysis(clip, request(images))
    path.write_text(path.read_text()[:100])
    assert cached_analysis(clip, request(images)) == path
    assert computed == [1, 1] and json.loads(path.read_text())["cache_key"] == cache_key(request(images))


def test_parallel_requests_compute_once(clip, images, cache, computed):
    inp = request(images)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cached_analysis(clip, inp))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert computed == [1] and len(set(results)) == 1 and len(results) == 3

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
from headroles.images import clip_transform
from headroles.pool import DEFAULT_POOL, read_pool
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


def test_the_cost_is_stated_and_both_phases_show_progress(clip, images, cache, capsys, monkeypatch):
    monkeypatch.setenv("PROMPTLAB_PROGRESS_SECONDS", "0.001")
    cached_analysis(clip, request(images), batch_size=2)
    out = capsys.readouterr().out
    assert "Head analysis: 8 images in batches of 2, layers [1, 2], 2761 texts from" in out
    first_batch = next(line for line in out.splitlines() if line.startswith("Head analysis: about "))
    assert " for 8 images on this device (" in first_batch and " s per image on the first batch of 2), then the text " \
        "phase; peak memory " in first_batch and first_batch.endswith(" GB so far (it does not grow with the number of images)")
    assert out.index(first_batch) < out.index("Head analysis, texts: ")  # before the rest of the work
    assert "Head analysis, images: " in out and "Head analysis, texts: 11 batches in " in out


def test_an_interrupted_analysis_resumes_from_its_saved_moments(clip, images, cache, capsys, monkeypatch):
    import headroles.analysis as analysis

    inp = request(images)
    monkeypatch.setattr(analysis, "SAVE_SECONDS", 0.0)  # save after every batch
    real = analysis.batch_contributions
    seen = []

    def failing(clip_, batch, layers):
        seen.append(len(batch))
        if len(seen) == 3:
            raise KeyboardInterrupt  # stopped while the third batch runs
        return real(clip_, batch, layers)

    monkeypatch.setattr(analysis, "batch_contributions", failing)
    with pytest.raises(KeyboardInterrupt):
        cached_analysis(clip, inp, batch_size=2)
    partial = cache_path(cache_key(inp)).with_suffix(".moments.pt")
    assert partial.is_file() and not cache_path(cache_key(inp)).exists()
    seen.clear()
    monkeypatch.setattr(analysis, "batch_contributions", lambda *a: (seen.append(len(a[1])), real(*a))[1])
    payload = json.loads(cached_analysis(clip, inp, batch_size=2).read_text())
    assert seen == [2, 2]  # images 5-8 only
    assert "resuming from the saved moments of 4 of 8 images" in capsys.readouterr().out
    assert not partial.exists()
    # the resumed analysis is the uninterrupted one
    whole = analysis.run_analysis(clip, list(images), clip_transform(clip.image_size), read_pool(DEFAULT_POOL),
                                  inp.settings, 2)
    assert len(payload["heads"]) == len(whole["heads"]) > 0
    for a, b in zip(payload["heads"], whole["heads"]):
        assert (a["layer"], a["head"], a["role"], [t["text"] for t in a["top_texts"]]) == \
            (b["layer"], b["head"], b["role"], [t["text"] for t in b["top_texts"]])
        assert a["entropy"] == pytest.approx(b["entropy"], abs=1e-9)


def test_moments_saved_for_another_analysis_are_not_resumed(clip, images, cache, capsys, tmp_path):
    from headroles.analysis import HeadMoments, MomentsFile

    moments = HeadMoments(8, clip.embed_dim)
    moments.add(torch.randn(3, 8, clip.embed_dim))
    MomentsFile(tmp_path / "m.pt", "analysis A", every=0).save(moments, 3, force=True)
    again = HeadMoments(8, clip.embed_dim)
    assert MomentsFile(tmp_path / "m.pt", "analysis B").load(again) == 0 and again.count == 0
    assert MomentsFile(tmp_path / "m.pt", "analysis A").load(again) == 3 and torch.equal(again.outer, moments.outer)


def test_the_analysis_keeps_only_the_class_tokens_head_outputs(clip, images, cache, monkeypatch):
    """What bounds its memory: per image and head one vector, not one per position (ViT-B/16: 197)."""
    shapes = []
    real = type(clip).forward_image

    def spy(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        shapes.extend(tuple(t.shape) for t in out.head_outputs.values())
        return out

    monkeypatch.setattr(type(clip), "forward_image", spy)
    cached_analysis(clip, request(images), batch_size=4)
    assert shapes == [(4, 1, clip.vision_heads, clip.vision_width)] * 4  # 2 batches x 2 layers


def test_a_live_analysis_keeps_its_moments_temp_file_while_a_dead_ones_goes(clip, images, cache):
    """Another run's clean-up must not take the moments an analysis is writing (it holds the entry's
    lock), and must take those a killed analysis left."""
    from filelock import FileLock

    inp = request(images)
    path = cache_path(cache_key(inp))
    path.parent.mkdir(parents=True)
    live = path.parent / f".{path.name.removesuffix('.json')}.moments.pt.abc123.tmp"
    live.write_bytes(b"half")
    lock = FileLock(store.entry_lock(path.with_suffix(".moments.pt")))
    assert store.entry_lock(path.with_suffix(".moments.pt")) == path.with_suffix(".lock")
    with lock:
        store.remove_interrupted_saves(path.parent, recursive=False, lock_of=store.entry_lock)
        assert live.is_file()  # its writer holds the entry's lock
    cached_analysis(clip, inp, batch_size=4)
    assert not live.exists()  # nobody holds it now: a killed writer's


def test_saved_moments_with_a_flipped_byte_are_not_resumed(clip, images, cache, tmp_path):
    """torch.load does not check its zip CRCs: the moments carry their digest, and a damaged file is
    started over, never resumed from (its role map would be cached for good)."""
    from headroles.analysis import HeadMoments, MomentsFile

    moments = HeadMoments(8, clip.embed_dim)
    moments.add(torch.randn(3, 8, clip.embed_dim))
    path = tmp_path / "m.pt"
    MomentsFile(path, "analysis A", every=0).save(moments, 3, force=True)
    data = bytearray(path.read_bytes())
    at = data.index(b"data/0") + 200  # inside the first tensor's bytes
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    again = HeadMoments(8, clip.embed_dim)
    assert MomentsFile(path, "analysis A").load(again) == 0 and again.count == 0
    MomentsFile(path, "analysis A").remove()
    assert not path.exists() and not path.with_name("m.pt.sha256").exists()

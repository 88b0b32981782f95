"""engine.cache: digests bound to file content, remembered only under what no copy tool can forge."""
import json
import os
from pathlib import Path

import pytest

import engine.cache as cache


@pytest.fixture()
def hashed(monkeypatch, tmp_path):
    """The files engine.cache reads to hash them, in order (its own cache folder under tmp_path)."""
    monkeypatch.setenv("PROMPTLAB_CACHE", str(tmp_path / "cache"))
    calls = []
    real = cache.sha256_file

    def counting(path):
        calls.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(cache, "sha256_file", counting)
    return calls


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def replace_keeping_size_and_mtime(path: Path, data: bytes) -> None:
    st = os.stat(path)
    assert len(data) == st.st_size
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_replaced_file_with_its_size_and_mtime_restored_gets_a_new_digest(hashed, tmp_path, monkeypatch):
    """What a (path, size, mtime) key missed: `cp -p` / `rsync -a` of other weights over the old ones."""
    monkeypatch.setattr(cache, "RACY_SECONDS", 0.0)
    weights = write(tmp_path / "ViT-B-16.pt", b"a" * 4096)
    first = cache.file_digest(weights)
    assert cache.file_digest(weights) == first and hashed == ["ViT-B-16.pt"]  # remembered
    replace_keeping_size_and_mtime(weights, b"b" * 4096)
    assert cache.file_digest(weights) != first and hashed == ["ViT-B-16.pt"] * 2


def test_a_file_changed_just_now_is_hashed_every_time(hashed, tmp_path, monkeypatch):
    """A racily-clean file (changed within RACY_SECONDS) is never remembered: on a file system
    with coarse timestamps a second rewrite within the same tick would look unchanged."""
    weights = write(tmp_path / "w.pt", b"x" * 100)
    changed = max(os.stat(weights).st_mtime, os.stat(weights).st_ctime)
    monkeypatch.setattr(cache.time, "time", lambda: changed + cache.RACY_SECONDS / 2)  # however slow this machine
    cache.file_digest(weights)
    cache.file_digest(weights)
    assert hashed == ["w.pt", "w.pt"]
    assert not (tmp_path / "cache" / "digests.json").exists()


def test_a_file_list_digest_follows_content_order_and_membership(hashed, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "RACY_SECONDS", 0.0)
    files = [write(tmp_path / f"{i}.jpg", bytes([i]) * 10) for i in range(3)]
    base = cache.files_digest(files)
    assert cache.files_digest(files) == base and len(hashed) == 3  # the second call only stats
    assert len({base, cache.files_digest(files[::-1]), cache.files_digest(files[:2])}) == 3
    os.utime(files[0], ns=(0, 10**18))  # a new mtime alone: the same bytes, the same digest
    assert cache.files_digest(files) == base
    replace_keeping_size_and_mtime(files[1], bytes([9]) * 10)
    assert cache.files_digest(files) != base


def test_the_index_keeps_its_newest_entries(hashed, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "RACY_SECONDS", 0.0)
    monkeypatch.setattr(cache, "INDEX_ENTRIES", 3)
    files = [write(tmp_path / f"{i}.pt", bytes([i]) * 10) for i in range(5)]
    for f in files:
        cache.file_digest(f)
    index = json.loads((tmp_path / "cache" / "digests.json").read_text())
    assert [k.split("|")[0] for k in index] == [f"file:{f.resolve()}" for f in files[2:]]


def test_a_killed_index_write_leaves_no_temp_file_behind(hashed, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "RACY_SECONDS", 0.0)
    folder = tmp_path / "cache"
    folder.mkdir()
    left = write(folder / ".digests.json.x7y8z9ab.tmp", b"{")
    others = write(folder / ".other.json.x7y8z9ab.tmp", b"{")  # another cache's temp file: not this lock's
    cache.file_digest(write(tmp_path / "w.pt", b"w"))
    assert not left.exists() and others.exists()

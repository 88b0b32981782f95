"""tools/download_textspan.py and `--texts textspan`: the pool is fetched once, checked by
SHA-256 before it is written, never replaces another file, and is found by name afterwards."""
import hashlib
from pathlib import Path

import pytest

from engine.errors import DataError, MissingFileError
from headroles import textspan_pool
from headroles.pool import read_pool
from tests.replica import load_tool

download_tool = load_tool("download_textspan")
POOL = b"A badge\nA bag\nA ball\n"


@pytest.fixture()
def source(tmp_path, monkeypatch):
    """A local stand-in for TextSpan's file, with its checksum as the expected one."""
    monkeypatch.setenv("PROMPTLAB_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "upstream.txt"
    path.write_bytes(POOL)
    monkeypatch.setattr(textspan_pool, "SHA256", hashlib.sha256(POOL).hexdigest())
    return path.as_uri()


def test_download_checks_the_file_and_textspan_names_it(source, tmp_path, capsys):
    with pytest.raises(MissingFileError, match=r"TextSpan's text pool is not downloaded yet .*python tools/download_textspan.py"):
        textspan_pool.resolve("textspan")
    assert download_tool.main(["--url", source]) == 0
    dest = tmp_path / "cache" / "textspan" / "image_descriptions_general.txt"
    assert dest.read_bytes() == POOL and "TextSpan pool downloaded: " in capsys.readouterr().out
    assert download_tool.main(["--url", "file:///nonexistent"]) == 0  # present and checked: nothing fetched
    assert "TextSpan pool present" in capsys.readouterr().out
    pool = read_pool(textspan_pool.resolve("textspan"))
    assert pool.texts == ("A badge", "A bag", "A ball") and pool.labels is None
    assert textspan_pool.resolve("my/pool.tsv").as_posix() == "my/pool.tsv"


def test_a_wrong_download_or_a_foreign_file_is_never_kept(source, tmp_path, monkeypatch):
    other = tmp_path / "other.txt"
    other.write_bytes(POOL + b"An extra line\n")
    with pytest.raises(DataError, match="its SHA-256 is .*, not the pinned .*; nothing was written"):
        download_tool.main(["--url", other.as_uri()])
    assert not (tmp_path / "cache" / "textspan").exists() or not any((tmp_path / "cache" / "textspan").iterdir())
    mine = tmp_path / "mine.txt"
    mine.write_text("my own notes\n")
    with pytest.raises(DataError, match="mine.txt exists but is not TextSpan's pool"):
        download_tool.main(["--url", source, "--out", str(mine)])
    assert mine.read_text() == "my own notes\n"
    monkeypatch.setattr(textspan_pool, "SHA256", "0" * 64)
    with pytest.raises(DataError):
        textspan_pool.download(tmp_path / "x.txt", source)
    assert not (tmp_path / "x.txt").exists()


def test_pinned_source_matches_the_shared_copy():
    shared = Path(__file__).resolve().parents[2] / "shared/data/textspan/image_descriptions_general.txt"
    if not shared.is_file():
        pytest.skip("no shared copy of TextSpan's pool here")
    assert hashlib.sha256(shared.read_bytes()).hexdigest() == textspan_pool.SHA256
    assert textspan_pool.COMMIT in textspan_pool.URL and (shared.parent / "SOURCE").read_text().find(textspan_pool.COMMIT) >= 0

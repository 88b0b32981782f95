import os
import stat
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")
# role maps, digests: never the user's own cache (engine.cache.user_cache_dir)
os.environ["PROMPTLAB_CACHE"] = tempfile.mkdtemp(prefix="promptlab-test-cache-")


@pytest.fixture()
def fake_python(tmp_path):
    """A PYTHON that records train.py calls (one line each) and runs `python -c` for real."""
    log = tmp_path / "calls.txt"
    stub = tmp_path / "python"
    stub.write_text(f'#!/bin/bash\nif [ "$1" = "-c" ]; then exec python "$@"; fi\necho "$@" >> {log}\n')
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    return stub, log


@pytest.fixture(scope="session")
def attr_color_shape_root(tmp_path_factory):
    """A DATA root holding the attribute world's AttrColorShape, generated once for the session."""
    from attrworld import derived

    root = tmp_path_factory.mktemp("attr_world")
    derived.generate(derived.DATASETS["AttrColorShape"], root)
    return root

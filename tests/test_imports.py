"""A run pays only for the imports it uses: train.py, with every trainer and dataset registered,
imports none of the packages that only some commands need, and the warm worker's client (which
stands in for each run of a sweep) imports no torch at all."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# package -> who needs it (imported there, inside the function that uses it)
ONLY_WHERE_USED = {
    "sentence_transformers": "DeAR's head-role analysis with text embeddings (headroles/concepts.py)",
    "sklearn": "DeAR's head-role clustering (headroles/concepts.py)",
    "matplotlib": "comparison plots (comparison/plot.py)",
    "submitit": "the SLURM launcher (sweeps/slurm.py)",
    "scipy": "datasets shipped as .mat files (datasets/common.py)",
    "external.dassl_engine": "trainer files written for Dassl (external/loader.py)",
    "external.openai_clip": "trainer files written for OpenAI's clip (external/loader.py)",
    "dassl": "trainer files written for Dassl",
    "clip": "trainer files written for OpenAI's clip",
    "sweeps": "tools/sweep.py",
    "comparison": "tools/compare.py",
}


def imported_by(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"import sys; {code}; print(' '.join(sys.modules))"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_train_py_imports_only_what_every_run_uses():
    loaded = imported_by("import train")
    assert "trainers.dear" in loaded and "datasets.caltech101" in loaded
    assert {name: why for name, why in ONLY_WHERE_USED.items() if name in loaded} == {}


def test_the_warm_client_starts_without_torch():
    loaded = imported_by("import engine.warm.client")
    assert not {"torch", "numpy", "trainers", "backbone"} & loaded

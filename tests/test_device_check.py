"""bench/device_check.sh, the accelerator check, kept working on this CPU (`--cpu --quick`).

The full CUDA run needs a GPU; CI runs the same code path on tiny-attr and generated images: every
trainer in every precision it declares, the table and its JSON, and the DeAR base-to-new run
through scripts/run.sh."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import trainers  # noqa: F401  (registers the trainers)
from engine.registry import TRAINER_REGISTRY

REPO = Path(__file__).resolve().parents[1]


def swept_trainers() -> list[str]:
    return [n for n in TRAINER_REGISTRY.names() if TRAINER_REGISTRY.get(n).SWEEP_CONFIGS]


@pytest.fixture(scope="module")
def quick_check(tmp_path_factory):
    out = tmp_path_factory.mktemp("device_check")
    env = {**os.environ, "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", "bench/device_check.sh", "--cpu", "--quick", "--out", str(out)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=900)
    return proc, out


def test_quick_check_passes_and_writes_its_table(quick_check):
    proc, out = quick_check
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((out / "device_check.json").read_text())
    assert report["device"] == "cpu" and report["quick"] is True
    seen = {(r["trainer"], r["prec"]) for r in report["rows"]}
    for name in swept_trainers():
        cls = TRAINER_REGISTRY.get(name)
        precs = ("fp32", "fp16", "amp") if cls.CONFIG_NODE and "PREC" in cls.CONFIG else ("fp32",)
        assert {(name, p) for p in precs} <= seen, name
    for row in report["rows"]:
        assert row["problems"] == [], row
        assert row["eval_img_s"] > 0
        trainable = getattr(TRAINER_REGISTRY.get(row["trainer"]), "TRAINABLE", True)
        assert ("loss" in row) == trainable, row
        assert ("logit_gap" in row) == (row["prec"] != "fp32"), row
    run = report["dear_base2new"]
    assert run["problems"] == [] and set(run["accuracy"]) == {"train_base", "test_new"}
    assert run["total_s"] == pytest.approx(run["base2new_train"] + run["base2new_test"])
    assert report["loader_img_s"] > 0
    warm = report["dear_base2new_warm"]  # the same runs through a warm worker: the same numbers
    assert warm["problems"] == [] and warm["accuracy"] == run["accuracy"]
    assert "The same two runs through one warm worker (tools/warm.py)" in proc.stdout
    assert "DeAR base-to-new through scripts/run.sh" in proc.stdout
    assert f"Table and figures: {out / 'device_check.json'}" in proc.stdout


def test_a_failed_check_exits_1_and_names_it(tmp_path, monkeypatch, capsys):
    """A tolerance no logit can meet: the amp row reports the gap and the exit status is 1."""
    sys.path.insert(0, str(REPO))
    from bench import device_check

    monkeypatch.setattr(device_check, "TOLERANCE", {"fp16": -1.0, "amp": -1.0})
    code = device_check.main(["--cpu", "--quick", "--trainers", "CoOp", "--skip-full-run",
                              "--out", str(tmp_path)])
    assert code == 1
    report = json.loads((tmp_path / "device_check.json").read_text())
    amp = next(r for r in report["rows"] if r["prec"] == "amp")
    assert amp["problems"] and amp["problems"][0].startswith("logits ") and "from fp32 (tolerance" in amp["problems"][0]
    assert "dear_base2new" not in report


def test_cuda_without_a_gpu_says_how_to_run_here(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run(["bash", "bench/device_check.sh", "--out", str(tmp_path)], cwd=REPO,
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "No CUDA device here" in proc.stderr and "--cpu" in proc.stderr
    assert "Traceback" not in proc.stderr

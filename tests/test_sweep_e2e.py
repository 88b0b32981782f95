"""tools/sweep.py end to end on the attribute world with the tiny-attr CLIP: a base-to-new sweep of
zero-shot CLIP and CoOp (2 datasets x 2 seeds, 1 shot, 1 epoch where the config says 10), killed
(SIGKILL to its process group) once its first run has finished, then restarted. The restarted sweep
must finish without redoing finished runs or losing any; tools/compare.py's CSV and
tools/parse_test_res.py must report exactly the runs' results.json."""
import csv
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from attrworld import derived
from tools.parse_test_res import main as parse_test_res

REPO = Path(__file__).resolve().parents[1]
DATASETS = {"attr_color_shape": "AttrColorShape", "attr_texture_shape": "AttrTextureShape"}
SEEDS = (1, 2)
METHODS = {"ZeroshotCLIP": "tiny", "CoOp": "tiny_ep10"}
# 1 epoch without warm-up at a high LR, so that CoOp moves away from zero-shot in one step
OPTS = ["OPTIM.MAX_EPOCH", "1", "OPTIM.WARMUP_EPOCH", "0", "OPTIM.LR", "0.05", "DATALOADER.NUM_WORKERS", "0"]


def run_dir(out: Path, part: str, dataset: str, method: str, seed: int) -> Path:
    return out / "base2new" / part / dataset / "shots_1" / method / METHODS[method] / f"seed{seed}"


def accuracy(run: Path) -> float:
    return json.loads((run / "results.json").read_text())["evaluations"]["test"]["metrics"]["accuracy"]


def snapshot(out: Path) -> dict[Path, tuple]:
    """Every finished run: its results.json bytes and mtime, and its log files."""
    return {p.parent: (p.read_bytes(), p.stat().st_mtime_ns, sorted(x.name for x in p.parent.glob("log.txt*")))
            for p in out.rglob("results.json")}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    data = tmp_path_factory.mktemp("DATA")
    for name in DATASETS.values():  # generated once here rather than by two parallel runs
        derived.generate(derived.DATASETS[name], data)
    out = tmp_path_factory.mktemp("output")
    command = [sys.executable, "tools/sweep.py", "--protocol", "base2new", "--config-set", "tiny",
               "--methods", *METHODS, "--datasets", *DATASETS, "--seeds", *map(str, SEEDS), "--shots", "1",
               "--jobs", "2", "--root", str(data), "--output", str(out), "--opts", *OPTS]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(out.parent / "first.txt", "w") as console:
        first = subprocess.Popen(command, cwd=REPO, env=env, stdout=console, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        deadline = time.time() + 600
        while not any(out.rglob("results.json")) and first.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        os.killpg(first.pid, signal.SIGKILL)  # the sweep and every run it started
        first.wait()
    before = snapshot(out)
    assert before, f"no run finished before the kill:\n{(out.parent / 'first.txt').read_text()}"
    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    return SimpleNamespace(out=out, before=before, second=second)


def test_killed_sweep_resumes_without_redoing_or_losing_runs(swept):
    assert swept.second.returncode == 0, swept.second.stdout + swept.second.stderr
    assert "8 of 8 chains done" in swept.second.stdout
    after = snapshot(swept.out)
    assert {run: after[run] for run in swept.before} == swept.before  # same bytes, mtime and logs: not redone
    expected = {run_dir(swept.out, part, d, m, s) for part in ("train_base", "test_new")
                for d in DATASETS for m in METHODS for s in SEEDS}
    assert set(after) == expected
    assert not list(swept.out.rglob("results.json-*"))  # no result was replaced either
    logs = sorted((swept.out / "sweeps").glob("base2new-*"))
    assert len(logs) == 2 and (logs[1] / "commands.txt").read_text().count("bash scripts/run.sh") == 12


def test_the_test_step_loads_the_epoch_training_stopped_at(swept):
    run = run_dir(swept.out, "test_new", "attr_texture_shape", "CoOp", 2)
    results = json.loads((run / "results.json").read_text())
    assert results["evaluations"]["test"]["epoch"] == 1  # the checkpoint of the 1-epoch run, not epoch 10
    assert "load_epoch: 1\n" in (run / "log.txt").read_text()


def test_compare_csv_equals_the_runs(swept):
    table = subprocess.run([sys.executable, "tools/compare.py", str(swept.out), "--protocol", "base2new",
                            "--format", "csv"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    rows = {(r["dataset"], r["method"]): r for r in csv.DictReader(io.StringIO(table))}
    base_means, new_means = {m: [] for m in METHODS}, {m: [] for m in METHODS}
    for dataset in DATASETS:
        for method, cfg in METHODS.items():
            base = [accuracy(run_dir(swept.out, "train_base", dataset, method, s)) for s in SEEDS]
            new = [accuracy(run_dir(swept.out, "test_new", dataset, method, s)) for s in SEEDS]
            hm = [2 * b * n / (b + n) for b, n in zip(base, new)]
            b, n = statistics.fmean(base), statistics.fmean(new)
            base_means[method].append(b)
            new_means[method].append(n)
            row = rows[(dataset, method)]
            assert (row["config"], int(row["seeds"])) == (cfg, len(SEEDS))
            expected = {"base_mean": b, "base_std": statistics.pstdev(base), "new_mean": n,
                        "new_std": statistics.pstdev(new), "hm_of_means": 2 * b * n / (b + n),
                        "hm_per_seed_mean": statistics.fmean(hm), "hm_per_seed_std": statistics.pstdev(hm)}
            assert {k: float(row[k]) for k in expected} == pytest.approx(expected, abs=5e-5), (dataset, method)
    for method in METHODS:
        b, n = statistics.fmean(base_means[method]), statistics.fmean(new_means[method])
        average = rows[("average", method)]
        assert float(average["base_mean"]) == pytest.approx(b, abs=5e-5)
        assert float(average["new_mean"]) == pytest.approx(n, abs=5e-5)
        assert float(average["hm_of_means"]) == pytest.approx(2 * b * n / (b + n), abs=5e-5)
    coop, zs = rows[("attr_color_shape", "CoOp")], rows[("attr_color_shape", "ZeroshotCLIP")]
    assert coop["base_mean"] != zs["base_mean"]  # the runs are told apart, not the same numbers twice


def test_parse_test_res_agrees_with_results_json_and_the_logs(swept, capsys):
    seeds = run_dir(swept.out, "test_new", "attr_color_shape", "CoOp", 1).parent
    mean = statistics.fmean(accuracy(seeds / f"seed{s}") for s in SEEDS)
    assert parse_test_res([str(seeds)]) == {str(seeds): pytest.approx(mean, abs=1e-9)}
    from_log = parse_test_res([str(seeds), "--test-log", "--from-log"])[str(seeds)]
    assert from_log == pytest.approx(mean, abs=0.05)  # log.txt rounds to one decimal
    base = run_dir(swept.out, "train_base", "attr_color_shape", "CoOp", 1).parent
    assert parse_test_res([str(base), "--from-log"])[str(base)] == pytest.approx(
        statistics.fmean(accuracy(base / f"seed{s}") for s in SEEDS), abs=0.05)

"""Warm workers (engine/warm): a run a worker serves is the run `python train.py` would have made,
file for file (results.json, checkpoints, log.txt, console), for every registered trainer and a
trainer file written for Dassl; a run that crashes, hangs or is killed takes nothing else down and
ends as that process would have; a held weights file is read again once it changes."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from backbone import sources
from engine.checkpoint import DIGEST_SUFFIX, read_verified
from engine.processes import alive
from engine.registry import TRAINER_REGISTRY
from engine.warm.owner import WarmWorker
from tests.minidata import make_caltech_like
from train import parse_args, setup_cfg

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples" / "dassl_trainers"
TINY = {name: f"configs/trainers/{name}/{TRAINER_REGISTRY.get(name).SWEEP_CONFIGS['tiny']}.yaml"
        for name in TRAINER_REGISTRY.names()}
# A trainer file first: had its config keys or registrations leaked into the worker, the runs after
# it would print another config than their own processes.
COMMANDS = {"DasslCoOp": ["--trainer-file", str(EXAMPLES), "--trainer", "DasslCoOp",
                          "--config-file", "configs/trainers/DasslCoOp/tiny.yaml"],
            **{name: ["--trainer", name, "--config-file", cfg, *([] if TRAINER_REGISTRY.get(name).TRAINABLE else ["--eval-only"])]
               for name, cfg in TINY.items()}}
TIMINGS = [(re.compile(r"time [\d.]+ \([\d.]+\) data [\d.]+ \([\d.]+\)"), "time - data -"),
           (re.compile(r"eta \d+:\d\d:\d\d"), "eta -"), (re.compile(r"^Elapsed: .*$", re.M), "Elapsed: -")]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_caltech_like(tmp_path_factory.mktemp("data"), size=64)


def train_argv(data_root: Path, out: Path, command: list[str]) -> list[str]:
    return ["train.py", "--root", str(data_root), "--output-dir", str(out), "--seed", "1",
            "--dataset-config-file", "configs/datasets/caltech101.yaml", *command,
            "DATASET.NUM_SHOTS", "1", "OPTIM.MAX_EPOCH", "1", "TRAIN.PRINT_FREQ", "1"]


def base_env() -> dict[str, str]:
    # no timed progress lines: a run past 30 s would print one its twin may not (logs are compared)
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PROMPTLAB_PROGRESS_SECONDS": "0"}


def start_worker(tmp: Path) -> WarmWorker:
    worker = WarmWorker(base_env(), tmp / "worker.log").start()
    assert worker.wait_ready(), (tmp / "worker.log").read_text()
    return worker


def run(argv: list[str], env: dict[str, str], worker: WarmWorker | None = None, **kw) -> subprocess.CompletedProcess:
    """`python train.py ...`, or the same command through `worker`'s client."""
    if worker is None:
        return subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, **kw)
    return subprocess.run([sys.executable, "-m", "engine.warm.client", *argv], cwd=REPO,
                          env={**env, **worker.env_for_commands()}, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def both(data_root, tmp_path_factory):
    """Each command run as its own process, its folder moved aside, then through one worker into the
    same folder (two commands at a time: the runs are deterministic, only the clock changes)."""
    out = tmp_path_factory.mktemp("runs")
    cfg = setup_cfg(parse_args(train_argv(data_root, out / "x", COMMANDS["CoOp"])[1:]))
    from engine.data.base import DATASET_REGISTRY

    DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)  # the few-shot split file, before either run would write it
    worker = start_worker(out)

    def pair(name: str) -> tuple[subprocess.CompletedProcess, subprocess.CompletedProcess]:
        argv, env = train_argv(data_root, out / name, COMMANDS[name]), {**base_env(), "PROMPTLAB_CACHE": str(out / f"cache-{name}")}
        fresh = run(argv, env)
        for folder in (out / name, out / f"cache-{name}"):  # both runs start without a feature cache
            if folder.exists():
                folder.rename(folder.with_name(folder.name + ".fresh"))
        return fresh, run(argv, env, worker)

    try:
        with ThreadPoolExecutor(2) as pool:
            results = dict(zip(COMMANDS, pool.map(pair, COMMANDS)))
    finally:
        worker.stop()
    return out, results, (out / "worker.log").read_text()


def without_timings(text: str) -> str:
    for pattern, replacement in TIMINGS:
        text = pattern.sub(replacement, text)
    return text


def same(a, b, where: str) -> None:
    """Equal values, tensors equal in dtype, shape and every bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)), where  # every bit
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def results_without_timings(path: Path) -> dict:
    results = json.loads(path.read_text())
    for evaluation in results["evaluations"].values():
        del evaluation["wall_time_s"], evaluation["eval_time_s"]
    return results


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_served_run_equals_its_own_process(both, name):
    out, results, worker_log = both
    fresh, warm = results[name]
    assert fresh.returncode == warm.returncode == 0, fresh.stderr[-3000:] + warm.stderr[-3000:]
    served, own = out / name, out / f"{name}.fresh"
    assert f"--output-dir {served} " in worker_log  # the worker ran it, not a fallback process
    files = sorted(p.relative_to(served) for p in served.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(own) for p in own.rglob("*") if p.is_file())
    assert Path("results.json") in files and Path("log.txt") in files
    for rel in files:
        a, b = own / rel, served / rel
        if rel.name == "results.json":
            same(results_without_timings(a), results_without_timings(b), str(rel))
        elif rel.name.startswith("log.txt"):
            assert without_timings(a.read_text()) == without_timings(b.read_text())
        elif rel.name.endswith(DIGEST_SUFFIX):  # each checkpoint's digest is its own file's
            assert read_verified(b.with_name(rel.name.removesuffix(DIGEST_SUFFIX)), str(rel))
        elif rel.name.startswith("model"):
            same(torch.load(a, weights_only=True), torch.load(b, weights_only=True), str(rel))
        else:
            assert a.read_bytes() == b.read_bytes(), rel
    assert without_timings(fresh.stdout) == without_timings(warm.stdout)
    assert "note:" not in warm.stderr


# ---- a run that misbehaves -------------------------------------------------------------------------
MISBEHAVING = '''
import os, signal, time

import torch
from torch import nn

from engine.registry import TRAINER_REGISTRY
from engine.trainer import TrainerX


class Zero(nn.Module):
    def __init__(self, classes):
        super().__init__()
        self.classes = classes

    def forward(self, images):
        return torch.zeros(len(images), self.classes)


@TRAINER_REGISTRY.register()
class Misbehaving(TrainerX):
    """Evaluates a constant classifier, or crashes, hangs or is killed while it builds, as TRAINER.MISBEHAVING.DO says."""
    CONFIG_NODE = "MISBEHAVING"
    CONFIG = {"DO": "finish"}
    TRAINABLE = False

    def build_model(self):
        do = self.cfg.TRAINER.MISBEHAVING.DO
        print(f"doing {do}", flush=True)
        if do == "crash":
            raise RuntimeError("crashed on purpose")
        if do == "hang":
            time.sleep(600)
        if do == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        self.model = Zero(self.num_classes)
'''


@pytest.fixture()
def misbehaving(tmp_path, data_root):
    (tmp_path / "misbehaving.py").write_text(MISBEHAVING)

    def argv(name: str, do: str) -> list[str]:
        return ["train.py", "--root", str(data_root), "--output-dir", str(tmp_path / name), "--seed", "1",
                "--dataset-config-file", "configs/datasets/caltech101.yaml", "--trainer-file",
                str(tmp_path / "misbehaving.py"), "--trainer", "Misbehaving", "--eval-only",
                "DATALOADER.NUM_WORKERS", "0", "MODEL.BACKBONE.NAME", "tiny-attr", "TRAINER.MISBEHAVING.DO", do]
    return argv


def client(argv: list[str], worker: WarmWorker, console: Path, env: dict | None = None) -> subprocess.Popen:
    with open(console, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "engine.warm.client", *argv], cwd=REPO,
                                env={**(env or base_env()), **worker.env_for_commands()}, stdout=out,
                                stderr=subprocess.STDOUT)


def wait_for(condition, timeout_s: float = 120.0) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def run_pid(folder: Path) -> int:
    """The PID of the run holding an output folder (engine/locks.py's holder record)."""
    wait_for(lambda: (folder / ".lock").is_file() and (folder / ".lock").read_text().strip())
    return json.loads((folder / ".lock").read_text())["pid"]


def test_a_run_that_crashes_hangs_or_is_killed_takes_only_itself_down(misbehaving, tmp_path):
    worker = start_worker(tmp_path)
    try:
        hang = client(misbehaving("hang", "hang"), worker, tmp_path / "hang.txt")
        hanging = run_pid(tmp_path / "hang")
        wait_for(lambda: "doing hang" in (tmp_path / "hang.txt").read_text())

        finish = run(misbehaving("finish", "finish"), base_env(), worker)  # served while the other hangs
        assert finish.returncode == 0 and (tmp_path / "finish" / "results.json").is_file(), finish.stderr

        crash = run(misbehaving("crash", "crash"), base_env(), worker)  # as the process: traceback, exit 1, logged
        assert crash.returncode == 1 and "RuntimeError: crashed on purpose" in crash.stderr
        assert "RuntimeError: crashed on purpose" in (tmp_path / "crash" / "log.txt").read_text()
        assert not (tmp_path / "crash" / "results.json").exists()

        die = run(misbehaving("die", "die"), base_env(), worker)
        assert die.returncode == -signal.SIGKILL  # the client dies of the run's signal, as the process did

        hang.send_signal(signal.SIGTERM)  # a sweep stopping: the signal goes to the run
        assert hang.wait(timeout=60) == -signal.SIGTERM
        wait_for(lambda: not alive(hanging))

        killed = client(misbehaving("killed", "hang"), worker, tmp_path / "killed.txt")
        orphan = run_pid(tmp_path / "killed")
        killed.kill()  # the client killed outright: the worker sees it gone and kills its run
        killed.wait()
        wait_for(lambda: not alive(orphan), timeout_s=30)

        again = run(misbehaving("finish", "finish"), base_env(), worker)
        assert again.returncode == 0 and "The results exist" not in again.stdout  # eval-only runs rerun
        assert worker.alive()
    finally:
        worker.stop()
    log = (tmp_path / "worker.log").read_text()
    assert log.count("ended") == 6 and "killing the run" in log


def test_commands_a_worker_cannot_serve_as_a_new_process_start_one(misbehaving, tmp_path):
    """Another environment, or a changed source file (even with its size and mtime kept): the run
    starts as its own process and says why; a worker whose sources changed takes no more commands."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("x = 1\n")
    env = {**base_env(), "PYTHONPATH": str(site)}
    worker = WarmWorker(env, tmp_path / "worker.log").start()
    try:
        assert worker.wait_ready()
        other = run(misbehaving("other_env", "crash"), {**env, "OMP_NUM_THREADS": "2"}, worker)
        served = run(misbehaving("served", "crash"), env, worker)
        assert other.returncode == served.returncode == 1
        note = ("note: the warm worker did not start the run (the environment differs from the worker's in "
                "OMP_NUM_THREADS); train.py runs as its own process\n")
        assert other.stderr == note + served.stderr  # the same traceback, from train.py's frame on
        before = (site / "sitecustomize.py").stat()  # rewritten with its size and mtime kept: only ctime shows it
        (site / "sitecustomize.py").write_text("x = 2\n")
        os.utime(site / "sitecustomize.py", ns=(before.st_atime_ns, before.st_mtime_ns))
        stale = run(misbehaving("stale", "finish"), env, worker)
        assert stale.returncode == 0 and (tmp_path / "stale" / "results.json").is_file()
        assert f"{site / 'sitecustomize.py'} changed since the worker started" in stale.stderr
        wait_for(lambda: not worker.alive(), timeout_s=30)  # retired: its owner starts a new one
    finally:
        worker.stop()
    assert "other_env" not in (tmp_path / "worker.log").read_text()


def test_held_weights_are_served_only_while_the_file_is_unchanged(tmp_path, monkeypatch):
    """A worker reads the weights once; a run takes the held copy only if the file's identity is still
    the one read (here: rewritten in place with the same size and mtime, which only ctime shows)."""
    path = tmp_path / "weights.pt"
    original = sources.read_state_dict(REPO / "backbone" / "weights" / "tiny-attr.pt")
    with open(path, "wb") as f:
        torch.save(original, f)
    assert sources.hold_weights(path) and str(path.resolve()) not in sources._HELD  # just written: not held
    real_time = time.time
    monkeypatch.setattr(sources.time, "time", lambda: real_time() + 3)  # as if read 3 s later
    assert sources.hold_weights(path) and not sources.hold_weights(path)  # read once, then held
    assert str(path.resolve()) in sources._HELD
    served = sources.read_state_dict(path)
    assert served.keys() == original.keys() and all(torch.equal(served[k], original[k]) for k in served)
    assert str(path.resolve()) not in sources._HELD  # one read per process: a second read opens the file

    assert sources.hold_weights(path) and str(path.resolve()) in sources._HELD
    changed = {k: v.clone() for k, v in original.items()}
    key = next(k for k, v in changed.items() if v.is_floating_point() and v.numel() > 1)
    changed[key].view(-1)[0] += 1
    st = path.stat()
    time.sleep(0.01)
    with open(path, "r+b") as f:  # the same inode, size and mtime: only the content (and ctime) change
        torch.save(changed, f)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_ino, path.stat().st_size, path.stat().st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    now = sources.read_state_dict(path)
    assert torch.equal(now[key], changed[key]) and not torch.equal(now[key], original[key])


def test_tools_warm_serves_a_scripts_runs_from_one_worker(data_root, tmp_path):
    """`python tools/warm.py COMMAND`: every train.py run of the command's scripts goes to one worker."""
    env = {**base_env(), "DATA": str(data_root), "OUTPUT": str(tmp_path / "out")}
    done = subprocess.run([sys.executable, "tools/warm.py", "--log", str(tmp_path / "worker.log"), "bash",
                           "scripts/run.sh", "base2new_zeroshot", "ZeroshotCLIP", "tiny", "caltech101", "1"],
                          cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    runs = sorted((tmp_path / "out").rglob("results.json"))
    assert [p.parts[-7] for p in runs] == ["test_new", "train_base"]
    log = (tmp_path / "worker.log").read_text()
    assert log.count(" ended (0)") == 2 and all(f"--output-dir {p.parent} " in log for p in runs)



@pytest.mark.parametrize("env, why", [
    ({}, None),
    ({"NPROC": "1"}, None),
    ({"NPROC": "2"}, "NPROC=2: torchrun starts each run's processes (scripts/common.sh)"),
    ({"PROMPTLAB_WARM": "0"}, "PROMPTLAB_WARM=0"),
])
def test_no_worker_is_started_where_no_run_would_use_it(env, why, tmp_path):
    """Local slots, SLURM jobs and tools/warm.py ask the same question before starting a worker: with
    NPROC > 1 scripts/common.sh runs torchrun, which would leave a worker holding the weights unused."""
    from engine.warm.owner import unusable
    from sweeps.local import SlotWorkers

    assert unusable(env) == why
    assert SlotWorkers({**env, "PYTHON": sys.executable}, [{}], tmp_path).why_not == why

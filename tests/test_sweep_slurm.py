"""tools/sweep.py --launcher slurm against a real scheduler: a one-node SLURM started for the test
(tests/slurm_cluster.py; skipped where SLURM is not installed, required in CI by .ci/run).

A tiny-attr CoOp base-to-new sweep (1 dataset, 1 seed, 1 shot, 6 epochs) is submitted twice, into
two output trees. Job A gets USR2 (what SLURM sends before a time limit, and on preemption) once its
first epoch checkpoint exists: submitit's checkpoint() stops the step and requeues the job, and the
rerun resumes from the checkpoint. Its epochs take a fraction of a second, so its train.py is paused
(SIGSTOP) from the first checkpoint until a stop signal is pending or it is gone: the run cannot finish
before the signal reaches it. Its results.json metrics and final checkpoint must equal job B's,
which ran uninterrupted. --status and rerunning the sweep re-attach (nothing resubmitted); a failing
chain is listed with its log and resubmitted by the next run.
"""
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from engine.locks import FileLock
from tests.slurm_cluster import OneNodeSlurm, missing_reason

CHAIN = "CoOp-tiny_ep10-attr_color_shape-shots1-seed1"
EPOCHS = 6
OPTS = ["OPTIM.MAX_EPOCH", str(EPOCHS), "DATALOADER.NUM_WORKERS", "0"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = missing_reason()
    if reason:
        if os.environ.get("PROMPTLAB_REQUIRE_SLURM") == "1":
            pytest.fail(f"PROMPTLAB_REQUIRE_SLURM=1 but {reason}")
        pytest.skip(reason)
    with pytest.MonkeyPatch.context() as mp, OneNodeSlurm(tmp_path_factory.mktemp("slurm")) as c:
        mp.setenv("SLURM_CONF", c.env["SLURM_CONF"])  # sbatch, squeue and the jobs find this cluster
        mp.setenv("OMP_NUM_THREADS", "1")
        yield c


def sweep(data: Path, out: Path, *extra: str, opts=OPTS) -> SimpleNamespace:
    """tools/sweep.py's main in this process (the jobs start their own Python)."""
    from sweeps.command import main

    args = ["--protocol", "base2new", "--config-set", "tiny", "--methods", "CoOp", "--datasets", "attr_color_shape",
            "--seeds", "1", "--shots", "1", "--root", str(data), "--output", str(out), "--opts", *opts,
            "--launcher", "slurm", "--slurm-gpus-per-job", "0", "--slurm-cpus-per-job", "1", "--slurm-mem", "3G",
            "--slurm-time", "10", *extra]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(args)
    return SimpleNamespace(code=code, out=stdout.getvalue())


def submitted_id(result: SimpleNamespace) -> str:
    match = re.search(rf"^ +(\S+)  {CHAIN}$", result.out, re.M)
    assert match, result.out
    return match.group(1)


def wait_for(condition, what: str, cluster: OneNodeSlurm, job: str, out: Path, timeout: float = 180,
             poll_s: float = 0.1):
    """Until `condition()`; fails at once, with the job's logs, if the job has left the queue."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        if job not in cluster.queue():
            logs = [*(out / "sweeps" / "slurm").glob("*.out"), *out.rglob("slurm-*.log")]
            raise AssertionError(f"job {job} left the queue before {what}:\n"
                                 + "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in logs))
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}; queue {cluster.queue()}\n{cluster.logs()}")


def pause_writer(folder: Path) -> int:
    """SIGSTOP the train.py that holds `folder` (its PID is in the run's lock record)."""
    holder = FileLock(folder / ".lock").holder()
    assert holder is not None, f"no lock record in {folder}"
    os.kill(holder.pid, signal.SIGSTOP)
    return holder.pid


def stopping(pid: int) -> bool:
    """Whether the paused process is gone, or has a stop signal pending (SIGTERM from the chain's
    checkpoint(), or USR2 itself: slurmstepd wakes the step's processes to deliver it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    if re.search(r"^State:\s*[ZX]", status, re.MULTILINE):
        return True
    wanted = (1 << (signal.SIGTERM - 1)) | (1 << (signal.SIGUSR2 - 1))
    masks = re.findall(r"^(?:SigPnd|ShdPnd):\s*([0-9a-f]+)$", status, re.MULTILINE)
    return any(int(mask, 16) & wanted for mask in masks)


def run(out: Path, part: str) -> Path:
    return out / "base2new" / part / "attr_color_shape" / "shots_1" / "CoOp" / "tiny_ep10" / "seed1"


@pytest.fixture(scope="module")
def swept(cluster, attr_color_shape_root, tmp_path_factory):
    data = attr_color_shape_root
    out_a, out_b = tmp_path_factory.mktemp("interrupted"), tmp_path_factory.mktemp("uninterrupted")
    started = time.time()
    job_a = submitted_id(sweep(data, out_a))
    submitted_id(sweep(data, out_b))  # the uninterrupted twin
    checkpoint = run(out_a, "train_base") / "prompt_learner" / "model.pth.tar-1"
    wait_for(checkpoint.is_file, f"{checkpoint}", cluster, job_a, out_a, poll_s=0.005)
    writer = pause_writer(run(out_a, "train_base"))
    subprocess.run(["scancel", "--signal=USR2", job_a], check=True, env=cluster.env)
    wait_for(lambda: stopping(writer), "the stop signal to reach the step", cluster, job_a, out_a, 60)
    with contextlib.suppress(ProcessLookupError):
        os.kill(writer, signal.SIGCONT)
    wait_for(lambda: cluster.queue().get(job_a) == "PENDING", "the requeue", cluster, job_a, out_a, 60)
    during = sweep(data, out_a, "--status")
    # SLURM holds a requeued job for about two minutes (its BeginTime); the test need not wait for that
    subprocess.run(["scontrol", "update", f"jobid={job_a}", "StartTime=now"], check=True, env=cluster.env)
    attached = sweep(data, out_a, "--wait", "0.5")
    sweep(data, out_b, "--wait", "0.5")
    return SimpleNamespace(data=data, a=out_a, b=out_b, job_a=job_a, during=during, attached=attached,
                           after=sweep(data, out_a, "--status"), again=sweep(data, out_a), wall_s=time.time() - started)


def test_interrupted_job_is_requeued_and_resumes_to_the_uninterrupted_result(swept):
    assert f"pending      {CHAIN}  job {swept.job_a} (PENDING, BeginTime)" in swept.during.out
    train = run(swept.a, "train_base")
    logs = sorted(train.glob("log.txt*"))
    consoles = "\n".join(f"--- {p}\n{p.read_text()[-4000:]}" for p in sorted(train.glob("slurm-*.log")))
    assert len(logs) == 2, f"{logs}\n{swept.attached.out}\n{consoles}"  # the first attempt's log, then the requeued job's
    rerun = logs[1].read_text()
    resumed = int(re.search(r"^Previous epoch: (\d+)$", rerun, re.M).group(1))
    assert 1 <= resumed < EPOCHS and f"model.pth.tar-{resumed}" in rerun
    console = (train / f"slurm-{swept.job_a}.log").read_text()
    assert console.count(f"# SLURM job {swept.job_a}") == 2  # both attempts, beside the run's own logs
    for part in ("train_base", "test_new"):
        a, b = (json.loads((run(out, part) / "results.json").read_text()) for out in (swept.a, swept.b))
        assert a["evaluations"]["test"]["metrics"] == b["evaluations"]["test"]["metrics"], part
    final_a, final_b = (torch.load(run(out, "train_base") / "prompt_learner" / f"model.pth.tar-{EPOCHS}",
                                   weights_only=True)["state_dict"] for out in (swept.a, swept.b))
    assert final_a.keys() == final_b.keys() and all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    print(f"SLURM sweep test: {swept.wall_s:.0f} s from the first submission to the last result")


def test_the_sweep_reattaches_and_submits_nothing_that_is_done_or_queued(swept):
    assert swept.attached.code == 0
    assert "1 chains: 1 running (of 1 chains)." in swept.attached.out or \
        "1 chains: 1 pending (of 1 chains)." in swept.attached.out
    assert "Nothing to submit." in swept.attached.out and "1 of 1 chains done." in swept.attached.out
    assert f"done         {CHAIN}\n1 done (of 1 chains)." in swept.after.out
    assert "1 chains: 1 done (of 1 chains).\nNothing to submit." in swept.again.out
    assert len((swept.a / "sweeps" / "slurm" / "jobs.jsonl").read_text().splitlines()) == 1


def test_a_failed_chain_is_listed_with_its_log_and_resubmitted(swept, tmp_path):
    bad = ["OPTIM.MAX_EPOCH", "0", "DATALOADER.NUM_WORKERS", "0"]  # refused by train.py (ConfigError)
    first = sweep(swept.data, tmp_path, "--wait", "0.5", opts=bad)
    job = submitted_id(first)
    log = run(tmp_path, "train_base") / f"slurm-{job}.log"
    assert first.code == 1
    assert (f"1 not done:\nfailed       {CHAIN}  job {job}: FAILED (exited with 1); the chain stops here\n"
            f"{'':13}log: {log}") in first.out
    assert "error: OPTIM.MAX_EPOCH 0: CoOp has learnable weights" in log.read_text()
    second = sweep(swept.data, tmp_path, opts=bad)
    assert "1 chains: 1 failed (of 1 chains)." in second.out and submitted_id(second) != job


def test_jobs_the_scheduler_refuses_are_a_user_error(cluster, attr_color_shape_root, tmp_path):
    from engine.errors import UsageError

    with pytest.raises(UsageError, match=r"(?s)sbatch refused the jobs: .*invalid partition.*\nCheck --slurm-partition"):
        sweep(attr_color_shape_root, tmp_path, "--slurm-partition", "nope")
    assert not (tmp_path / "sweeps" / "slurm" / "jobs.jsonl").exists()

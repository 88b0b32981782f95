"""tools/sweep.py --launcher slurm without a scheduler: the options, the dry run of the full
base-to-new comparison, and each chain's state from job records and a given queue (the real
scheduler: tests/test_sweep_slurm.py)."""
import json
from pathlib import Path

import pytest

from engine.errors import UsageError
from sweeps.cluster import (
    JobRecord, QueueEntry, SlurmOptions, add_records, job_log, latest_records, new_record, parse_opts, parse_time,
)
from sweeps.command import main as sweep_main
from sweeps.command import without_wait
from sweeps.plan import Chain, Step
from sweeps.status import chain_state, summary

REPO = Path(__file__).resolve().parents[1]
ALL = ["ZeroshotCLIP", "CoOp", "CoCoOp", "IVLP", "MaPLe", "PromptSRC", "DeAR", "CLIPAdapter"]


@pytest.mark.parametrize("text,minutes", [("720", 720), ("1:30", 2), ("12:00:00", 720), ("1-00:00:00", 1440),
                                          ("2-6", 2 * 1440 + 360), ("0-1:30", 90), ("0:0:59", 1)])
def test_slurm_time_in_sbatch_forms(text, minutes):
    assert parse_time(text) == minutes


@pytest.mark.parametrize("text", ["12h", "1:2:3:4", "-5", "0", ""])
def test_bad_slurm_time_says_the_forms(text):
    with pytest.raises(UsageError, match=r"--slurm-time .*(minutes \(e.g. 720\) or \[D-\]HH:MM:SS|under a minute)"):
        parse_time(text)


def test_slurm_opts_and_parameters():
    assert parse_opts(["constraint=a100", "--exclude=node[1-2]", "mail-type=END"]) == {
        "constraint": "a100", "exclude": "node[1-2]", "mail_type": "END"}
    with pytest.raises(UsageError, match="--slurm-opt takes KEY=VALUE"):
        parse_opts(["constraint"])
    options = SlurmOptions(partition="gpu", gpus_per_job=4, mem="64G", time_min=90, extra={"constraint": "a100"})
    params = options.parameters(Path("/repo"))
    assert params["partition"] == "gpu" and params["gpus_per_node"] == 4 and params["mem"] == "64G"
    assert params["time"] == 90 and params["additional_parameters"] == {"requeue": True, "constraint": "a100"}
    assert "cpus_per_task" not in params and "account" not in params  # unset: the cluster's defaults
    assert options.job_env() == {"NPROC": "4"} and SlurmOptions(gpus_per_job=1).job_env() == {}
    assert "gpus_per_node" not in SlurmOptions(gpus_per_job=0).parameters(Path("/repo"))


@pytest.mark.parametrize("args,message", [
    (["--slurm-partition", "gpu"], "--slurm-partition needs --launcher slurm"),
    (["--wait"], "--wait needs --launcher slurm"),
    (["--launcher", "slurm", "--jobs", "4"], "--jobs is for --launcher local"),
    (["--launcher", "slurm", "--slurm-gpus-per-job", "-1"], "--slurm-gpus-per-job must be at least 0"),
])
def test_option_errors(args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sweep_main(["--protocol", "base2new", "--methods", "CoOp", "--dry-run", *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_dry_run_of_the_full_base2new_comparison_of_every_method(capsys):
    assert sweep_main(["--protocol", "base2new", "--methods", *ALL, "--dry-run"]) == 0
    local = capsys.readouterr().out.splitlines()
    assert sweep_main(["--protocol", "base2new", "--methods", *ALL, "--dry-run", "--launcher", "slurm",
                       "--slurm-partition", "gpu", "--slurm-time", "12:00:00", "--slurm-opt", "constraint=a100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"submitit.SlurmExecutor(folder='{REPO}/output/sweeps/slurm', max_num_timeout=3).update_parameters("
    assert "    time=720," in lines and "    partition='gpu'," in lines and "    gpus_per_node=1," in lines
    assert "    additional_parameters={'requeue': True, 'constraint': 'a100'}," in lines
    # 8 methods x 11 datasets x 3 seeds; ZeroshotCLIP's chains are one step, the others' two
    assert "264 jobs, one per chain, in 1 job array (at most 256 running at once); 495 steps:" in lines
    jobs = [line for line in lines if line.startswith("[")]
    assert len(jobs) == 264 and jobs[1] == "[1] CoOp-vit_b16_ep50_ctxv1-imagenet-shots16-seed1"
    assert [line.strip() for line in lines if line.startswith("    SHOTS=")] == local  # the local sweep's commands


def test_status_command_drops_wait():
    assert without_wait(["--launcher", "slurm", "--wait", "--seeds", "1"]) == ["--launcher", "slurm", "--seeds", "1"]
    assert without_wait(["--wait", "2.5", "--seeds", "1"]) == ["--seeds", "1"]
    assert without_wait(["--wait=3", "--output", "o"]) == ["--output", "o"]


def chain(tmp_path: Path) -> Chain:
    runs = [str(tmp_path / "train"), str(tmp_path / "test")]
    return Chain("CoOp-c-dtd-shots16-seed1", (Step("base2new_train", ("CoOp", "c", "dtd", "1"), 16, (runs[0],)),
                                              Step("base2new_test", ("CoOp", "c", "dtd", "1"), 16, (runs[1],))))


@pytest.fixture
def states(tmp_path, monkeypatch):
    """chain_state with each run's state given (the scripts and train.py have their own tests)."""
    given: dict[str, list[tuple[str, str, str]]] = {}
    monkeypatch.setattr("sweeps.status.run_states", lambda step, env: given[step.function])
    return given


def test_chain_states_from_records_and_the_queue(tmp_path, states):
    c = chain(tmp_path)
    record = new_record(c, {}, "41_3")
    new = [("f", "new", "")]
    states.update(base2new_train=new, base2new_test=new)
    assert chain_state(c, {}, None, None, tmp_path).state == "not started"
    queue = {"41_3": QueueEntry("PENDING", "Priority")}
    found = chain_state(c, {}, record, queue, tmp_path)
    assert (found.state, found.detail) == ("pending", "job 41_3 (PENDING, Priority)")
    assert chain_state(c, {}, record, {"41_3": QueueEntry("RUNNING", "None")}, tmp_path).detail == "job 41_3 (RUNNING)"
    assert chain_state(c, {}, record, None, tmp_path).state == "submitted"  # no squeue on this machine

    log = job_log(c.steps[0], "41_3")  # the job left the queue: failed, with the step's console
    log.parent.mkdir(parents=True)
    log.write_text("$ ...\n# FAILED (exited with 1); the chain stops here\n")
    failed = chain_state(c, {}, record, {}, tmp_path)
    assert (failed.state, failed.log) == ("failed", log)
    assert failed.detail == "job 41_3: FAILED (exited with 1); the chain stops here"
    assert f"failed       {c.name}  job 41_3: FAILED" in failed.line() and f"log: {log}" in failed.line()

    states["base2new_train"] = [("f", "finished", "")]  # trained; its test is what is left
    log = job_log(c.steps[1], "41_3")
    assert chain_state(c, {}, record, {}, tmp_path).log == tmp_path / "sweeps" / "slurm" / "41_3_0_log.out"
    log.parent.mkdir(parents=True)
    log.write_text("$ ...\n")
    assert chain_state(c, {}, record, {}, tmp_path).detail == "job 41_3 left the queue"
    assert chain_state(c, {}, None, None, tmp_path).state == "unfinished"
    states["base2new_test"] = [("f", "running", "PID 7 on host h")]
    assert chain_state(c, {}, None, None, tmp_path).detail == "PID 7 on host h writes f"
    states["base2new_test"] = [("f", "mismatch", "results.json: seed 2 vs 1")]
    assert chain_state(c, {}, record, {}, tmp_path).state == "conflict"
    states["base2new_test"] = [("f", "finished", "")]
    done = chain_state(c, {}, record, {"41_3": QueueEntry("RUNNING", "None")}, tmp_path)
    assert done.state == "done" and summary([done, failed]) == "1 done, 1 failed (of 2 chains)"


def test_job_records_keep_the_newest_job_per_chain(tmp_path):
    c = chain(tmp_path)
    add_records(tmp_path, [new_record(c, {}, "7")])
    add_records(tmp_path, [new_record(c, {"OUTPUT": "elsewhere"}, "8"), new_record(c, {}, "9")])
    with open(tmp_path / "sweeps" / "slurm" / "jobs.jsonl", "a") as f:
        f.write('{"chain": "cut by a full disk')
    records = latest_records(tmp_path)
    key = tuple(s.command({}) for s in c.steps)
    assert records[key].job_id == "9" and len(records) == 2  # other commands are another chain
    assert records[key].logs == [str(tmp_path / "train" / "slurm-9.log"), str(tmp_path / "test" / "slurm-9.log")]
    assert JobRecord(**json.loads((tmp_path / "sweeps" / "slurm" / "jobs.jsonl").read_text().splitlines()[0]))


@pytest.mark.parametrize("installed", [True, False], ids=["SLURM installed", "no SLURM"])
def test_the_slurm_launcher_needs_sbatch_and_srun(installed, tmp_path, monkeypatch):
    """Both kinds of machine, whichever this one is: without sbatch/srun the launcher stops with
    one message; with them (faked here) it builds the executor."""
    import shutil

    import sweeps.slurm as slurm

    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}" if installed else None)
    if installed:
        assert slurm.executor(tmp_path, slurm.SlurmOptions()).folder.is_relative_to(tmp_path)
    else:
        with pytest.raises(UsageError, match="--launcher slurm: sbatch and srun are not on PATH"):
            slurm.executor(tmp_path, slurm.SlurmOptions())

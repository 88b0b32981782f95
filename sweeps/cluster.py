"""What the SLURM launcher knows without submitit: the job parameters, the record of submitted
jobs, the scheduler's queue, and where each job's console goes.

Files, under the output tree (shared with the compute nodes, as the runs are):
  <output>/sweeps/slurm/              submitit's folder: pickled jobs, sbatch scripts, job logs
  <output>/sweeps/slurm/jobs.jsonl    one line per submitted chain: job id, commands, console logs
  <run folder>/slurm-<job id>.log     a step's console in that job (train.py's own log.txt beside it)
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import UsageError
from engine.locks import locked
from sweeps.plan import Chain, Step
from sweeps.steps import run_path

# squeue states of a job that will still run (or runs); anything else has left the queue for good.
LIVE_STATES = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
               "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "PREEMPTED")
MAX_ARRAY = 1000  # SLURM's default MaxArraySize is 1001: larger sweeps go in several arrays
MAX_TIMEOUTS = 3  # requeues after reaching the time limit (submitit's default); preemptions are not counted
DEFAULT_TIME_MIN = 24 * 60


def parse_time(value: str) -> int:
    """--slurm-time in whole minutes (rounded up), from any of sbatch's forms: M, M:S, H:M:S, D-H,
    D-H:M, D-H:M:S. submitit needs minutes: it counts them to tell a time limit from a preemption."""
    days, _, clock = value.rpartition("-") if "-" in value else ("0", "", value)
    parts = clock.split(":")
    if not (days.isdigit() and all(p.isdigit() for p in parts) and 1 <= len(parts) <= 3):
        raise UsageError(f"--slurm-time {value!r}: give minutes (e.g. 720) or [D-]HH:MM:SS (e.g. 1-00:00:00)")
    numbers = [int(p) for p in parts]
    if "-" in value:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = (numbers + [0, 0])[:3]
    elif len(numbers) == 1:
        hours, minutes, seconds = 0, numbers[0], 0
    elif len(numbers) == 2:
        hours, minutes, seconds = 0, numbers[0], numbers[1]
    else:
        hours, minutes, seconds = numbers
    total = int(days) * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    if total < 1:
        raise UsageError(f"--slurm-time {value!r} is under a minute")
    return total


def parse_opts(items: list[str]) -> dict[str, str]:
    """--slurm-opt KEY=VALUE: extra #SBATCH lines (`--KEY=VALUE`), e.g. constraint=a100."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key):
            raise UsageError(f"--slurm-opt takes KEY=VALUE (an sbatch option without its dashes, e.g. "
                             f"constraint=a100 or exclude=node12), got {item!r}")
        out[key.replace("-", "_")] = value
    return out


@dataclass(frozen=True)
class SlurmOptions:
    """The --slurm-* options: one job per chain, each with these resources."""

    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int | None = None
    mem: str | None = None
    time_min: int = DEFAULT_TIME_MIN
    account: str | None = None
    qos: str | None = None
    array_parallelism: int = 256
    extra: dict[str, str] = field(default_factory=dict)

    def parameters(self, repo: Path) -> dict:
        """submitit.SlurmExecutor.update_parameters(**this). USR2 comes `signal_delay_s` before the
        time limit (submitit's default); --requeue lets a preempting cluster requeue the job too."""
        params: dict = {"job_name": "promptlab-sweep", "time": self.time_min, "signal_delay_s": 120,
                        "array_parallelism": self.array_parallelism, "stderr_to_stdout": True,
                        "setup": [f"export PYTHONPATH={repo}${{PYTHONPATH:+:$PYTHONPATH}}"],
                        "additional_parameters": {"requeue": True, **self.extra}}
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        for name, value in (("partition", self.partition), ("cpus_per_task", self.cpus_per_job),
                            ("mem", self.mem), ("account", self.account), ("qos", self.qos)):
            if value is not None:
                params[name] = value
        return params

    def job_env(self) -> dict[str, str]:
        """Several GPUs per job train each run with DDP over them (NPROC: scripts/common.sh's torchrun)."""
        return {"NPROC": str(self.gpus_per_job)} if self.gpus_per_job > 1 else {}


def slurm_folder(output: Path) -> Path:
    return output / "sweeps" / "slurm"


def job_log(step: Step, job_id: str) -> Path:
    """Where a step's console goes in job `job_id`: beside its run's own log.txt."""
    return run_path(step.out_dirs[0]) / f"slurm-{job_id}.log"


def chain_key(chain: Chain, env: dict[str, str]) -> list[str]:
    """What a job record must match to count for a chain: its exact commands."""
    return [step.command(env) for step in chain.steps]


@dataclass(frozen=True)
class JobRecord:
    chain: str
    commands: list[str]
    job_id: str
    submitted: str
    logs: list[str]


def records_file(output: Path) -> Path:
    return slurm_folder(output) / "jobs.jsonl"


def add_records(output: Path, records: list[JobRecord]) -> None:
    path = records_file(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path.with_name(path.name + ".lock")), open(path, "a") as f:
        for record in records:
            f.write(json.dumps(record.__dict__) + "\n")


def latest_records(output: Path) -> dict[tuple[str, ...], JobRecord]:
    """The newest job of each chain (by its commands) that was ever submitted into this tree."""
    path = records_file(output)
    out: dict[tuple[str, ...], JobRecord] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            record = JobRecord(**json.loads(line))
        except (ValueError, TypeError):
            continue  # a line cut by a full disk; the chains it named show as not started
        out[tuple(record.commands)] = record
    return out


def new_record(chain: Chain, env: dict[str, str], job_id: str) -> JobRecord:
    return JobRecord(chain.name, chain_key(chain, env), job_id, time.strftime("%Y-%m-%d %H:%M:%S"),
                     [str(job_log(step, job_id)) for step in chain.steps])


@dataclass(frozen=True)
class QueueEntry:
    state: str
    reason: str


def slurm_queue() -> dict[str, QueueEntry] | None:
    """Every job in the scheduler's queue, array tasks one by one (None where squeue is missing)."""
    if shutil.which("squeue") is None:
        return None
    out = subprocess.run(["squeue", "--noheader", "--array", "--format=%i|%T|%r"], capture_output=True,
                         text=True, timeout=120)
    if out.returncode:
        raise UsageError(f"squeue failed ({out.stderr.strip() or out.returncode}): is the SLURM controller "
                         "reachable from this machine?")
    queue = {}
    for line in out.stdout.splitlines():
        job_id, state, reason = (line.split("|") + ["", ""])[:3]
        queue[job_id.strip()] = QueueEntry(state.strip(), reason.strip())
    return queue

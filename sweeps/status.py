"""Where each chain of a sweep stands, from the output tree, the run folders' locks, the record of
submitted SLURM jobs and the scheduler's queue (`tools/sweep.py ... --status`).

The output tree is the authority on what is finished (results.json with this very manifest);
the queue says which submitted job will still run; a submitted job that has left the queue while
its chain is unfinished has failed (or was cancelled), and its console log says why.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sweeps.cluster import (
    LIVE_STATES, JobRecord, QueueEntry, chain_key, job_log, latest_records, slurm_folder, slurm_queue,
)
from sweeps.plan import Chain
from sweeps.steps import newest_log, run_states, shown

ORDER = ("done", "running", "pending", "failed", "conflict", "unfinished", "submitted", "not started")
# States a rerun of the sweep starts again; "running", "pending" and "submitted" are left alone,
# "conflict" (a folder holding another run) needs the user first.
RESTART = ("failed", "unfinished", "not started")


@dataclass(frozen=True)
class ChainState:
    chain: Chain
    state: str
    detail: str = ""
    log: Path | None = None

    def line(self) -> str:
        text = f"{self.state:12} {self.chain.name}" + (f"  {self.detail}" if self.detail else "")
        return text + (f"\n{'':13}log: {shown(self.log)}" if self.log else "")


def failure_line(log: Path) -> str:
    """The last `# FAILED (...)` line a job wrote to a step's console log, if any."""
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith("# FAILED")]
    except OSError:
        return ""
    return lines[-1].removeprefix("# ") if lines else ""


def chain_state(chain: Chain, env: dict[str, str], record: JobRecord | None,
                queue: dict[str, QueueEntry] | None, output: Path) -> ChainState:
    states = [(step, run_states(step, env)) for step in chain.steps]
    pending = [(step, runs) for step, runs in states if not runs or any(s != "finished" for _, s, _ in runs)]
    if not pending:
        return ChainState(chain, "done")
    step = pending[0][0]
    if record is not None and queue is not None and record.job_id in queue \
            and queue[record.job_id].state in LIVE_STATES:
        entry = queue[record.job_id]
        state = "pending" if entry.state == "PENDING" else "running"
        reason = f", {entry.reason}" if entry.reason and entry.reason != "None" else ""
        log = job_log(step, record.job_id)
        return ChainState(chain, state, f"job {record.job_id} ({entry.state}{reason})", log if log.is_file() else None)
    runs = [run for _, found in states for run in found]
    locked = [(folder, detail) for folder, state, detail in runs if state == "running"]
    if locked:
        return ChainState(chain, "running", f"{locked[0][1]} writes {locked[0][0]}")
    conflict = [(folder, detail) for folder, state, detail in runs if state == "mismatch"]
    if conflict:
        return ChainState(chain, "conflict", f"{conflict[0][0]} holds another run ({conflict[0][1]}); "
                                             "use another output tree, or --start-over in the run's own command")
    if record is not None and queue is None:
        return ChainState(chain, "submitted", f"job {record.job_id} (no squeue here to ask whether it still runs)")
    if record is not None:
        log = job_log(step, record.job_id)
        if not log.is_file():  # the job died before this step began: the scheduler's log says why
            log = slurm_folder(output) / f"{record.job_id}_0_log.out"
        why = failure_line(log) if log.is_file() else ""
        return ChainState(chain, "failed", f"job {record.job_id}" + (f": {why}" if why else " left the queue"), log)
    if any(state in ("unfinished", "finished") for _, state, _ in runs):
        return ChainState(chain, "unfinished", f"{step.function} stopped before it finished", newest_log(step.out_dirs[0]))
    return ChainState(chain, "not started")


def summary(states: list[ChainState]) -> str:
    counts = Counter(s.state for s in states)
    parts = [f"{counts[name]} {name}" for name in ORDER if counts[name]]
    return f"{', '.join(parts)} (of {len(states)} chains)"


def chain_states(chains: list[Chain], env: dict[str, str], output: Path) -> list[ChainState]:
    """Every chain's state; the scheduler is asked only if jobs were ever submitted into this tree."""
    records = latest_records(output)
    queue = slurm_queue() if records else None
    return [chain_state(chain, env, records.get(tuple(chain_key(chain, env))), queue, output) for chain in chains]


def print_status(chains: list[Chain], env: dict[str, str], output: Path) -> int:
    """--status: one line per chain (and its log where one says more), then the counts."""
    found = chain_states(chains, env, output)
    for s in found:
        print(s.line())
    print(summary(found) + ".")
    return 0

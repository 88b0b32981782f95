"""The SLURM launcher, through submitit: one job per chain, submitted as job arrays.

A job runs its chain's steps exactly as the local launcher does (`bash scripts/run.sh STEP ...`,
finished runs skipped, unfinished ones resumed by train.py), each step's console appended to
`slurm-<job id>.log` in the step's run folder. Before its time limit, or when it is preempted,
SLURM sends USR2 (`--signal`, submitit's convention); submitit then calls the job's `checkpoint()`,
which stops the running step, and requeues the job under the same id. The rerun starts the chain
again: its finished steps are skipped and train.py resumes the interrupted run from its newest
epoch checkpoint, with the run identity checked (engine/run_identity.py), so an interrupted job
ends with the result an uninterrupted one would have had. Any job that leaves the queue without
finishing its chain is listed as failed by `--status`, and rerunning the sweep resubmits it.
A job with two runs or more to do runs them through a warm worker of its own (engine/warm), which
saves each run after the first the interpreter's start-up and the reading of the weights.
"""
from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from pathlib import Path

import submitit

from engine.errors import UsageError
from engine.processes import stop_tree
from engine.warm.owner import WarmWorker, unusable
from sweeps.cluster import (
    LIVE_STATES, MAX_ARRAY, MAX_TIMEOUTS, JobRecord, SlurmOptions, add_records, job_log, latest_records, new_record,
    slurm_folder, slurm_queue,
)
from sweeps.plan import Chain
from sweeps.status import RESTART, chain_states, summary
from sweeps.steps import REPO, failure, shown, start_step, step_done


class ChainFailed(RuntimeError):
    """A step of the chain failed; the job ends with this as its error."""


class ChainJob(submitit.helpers.Checkpointable):
    """One chain as a SLURM job: callable by submitit, requeued (with no state but the output tree)."""

    STOP_GRACE_S = 30.0

    def __init__(self, chain: Chain, env: dict[str, str], extra: dict[str, str], warm: bool = True):
        self.chain = chain
        self.env = env  # DATA / OUTPUT, as in the step commands
        self.extra = extra  # the job's own settings (NPROC)
        self.warm = warm
        self._proc = None
        self._worker = None

    def __call__(self) -> str:
        job_id = submitit.JobEnvironment().job_id
        self._worker = self.warm_worker(job_id)
        try:
            return self.run_steps(job_id)
        finally:
            if self._worker is not None:
                self._worker.stop()

    def warm_worker(self, job_id: str) -> WarmWorker | None:
        """A warm worker for the job's runs, where it pays: two runs or more left to do."""
        environ = {**os.environ, **self.env, **self.extra}
        todo = [step for step in self.chain.steps if not step_done(step, self.env)]
        if not self.warm or sum(len(step.out_dirs) for step in todo) < 2 or unusable(environ):
            return None
        log = job_log(todo[0], job_id).with_name(f"slurm-{job_id}-warm-worker.log")
        worker = WarmWorker(environ, log).start()
        if worker.wait_ready():
            return worker
        worker.stop()
        return None

    def run_steps(self, job_id: str) -> str:
        warm = self._worker.env_for_commands() if self._worker is not None else {}
        for step in self.chain.steps:
            command = step.command(self.env)
            if step_done(step, self.env):
                print(f"finished earlier, skipped: {command}", flush=True)
                continue
            log_path = job_log(step, job_id)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            print(f"{command}\n  console: {log_path}", flush=True)
            with open(log_path, "a", buffering=1) as log:
                log.write(f"$ {command}  # SLURM job {job_id}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                self._proc = start_step(step, self.env, log, {**self.extra, **warm})
                code = self._proc.wait()
                self._proc = None
                reason = failure(step, code)
                if reason:
                    log.write(f"# FAILED ({reason}); the chain stops here\n")
                    raise ChainFailed(f"{step.function} {' '.join(step.args)}: {reason} (console: {log_path})")
        return f"chain {self.chain.name} done"

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on USR2 (time limit or preemption) before it requeues the job: the
        running step is stopped, so that the rerun finds its run folder free; train.py's epoch
        checkpoints are written atomically, so the rerun resumes from the newest one."""
        if self._proc is not None:
            stop_tree(self._proc.pid, self.STOP_GRACE_S)
        if self._worker is not None:
            self._worker.stop()
        return super().checkpoint(*args, **kwargs)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_proc": None, "_worker": None}  # nothing running is pickled with the job


def executor(output: Path, options: SlurmOptions) -> submitit.SlurmExecutor:
    if shutil.which("sbatch") is None or shutil.which("srun") is None:
        raise UsageError("--launcher slurm: sbatch and srun are not on PATH. Run the sweep on a machine of the "
                         "cluster (a login node), or use --launcher local")
    ex = submitit.SlurmExecutor(folder=slurm_folder(output), max_num_timeout=MAX_TIMEOUTS)
    ex.update_parameters(**options.parameters(REPO))
    return ex


def submit(chains: list[Chain], env: dict[str, str], options: SlurmOptions, output: Path,
           warm: bool = True) -> list[JobRecord]:
    """One job per chain, in arrays of at most MAX_ARRAY jobs; each job recorded once submitted."""
    ex = executor(output, options)
    records = []
    for start in range(0, len(chains), MAX_ARRAY):
        batch = chains[start:start + MAX_ARRAY]
        try:
            with ex.batch():
                jobs = [ex.submit(ChainJob(chain, env, options.job_env(), warm)) for chain in batch]
        except submitit.core.utils.FailedJobError as e:
            raise UsageError(f"sbatch refused the jobs: {e}\nCheck --slurm-partition, --slurm-account, "
                             "--slurm-qos and --slurm-opt against the cluster's `sinfo` and `sacctmgr show assoc`"
                             ) from None
        batch_records = [new_record(chain, env, job.job_id) for chain, job in zip(batch, jobs)]
        add_records(output, batch_records)
        records += batch_records
    return records


def launch(chains: list[Chain], env: dict[str, str], options: SlurmOptions, output: Path, status_command: str,
           wait_s: float | None, warm: bool = True) -> int:
    """Submit every chain that is not done, running or queued; with `wait_s`, also wait for the
    sweep's jobs (these and earlier ones) and report like the local launcher. `warm`: each job
    with two runs or more to do runs them through its own warm worker (engine/warm)."""
    before = chain_states(chains, env, output)
    todo = [s.chain for s in before if s.state in RESTART]
    print(f"{len(chains)} chains: {summary(before)}.")
    for s in before:
        if s.state == "conflict":
            print(s.line())
    records = submit(todo, env, options, output, warm) if todo else []
    if records:
        print(f"Submitted {len(records)} jobs (one per chain; submitit folder {shown(slurm_folder(output))}):")
        for record in records:
            print(f"  {record.job_id:>12}  {record.chain}\n{'':16}console: {shown(Path(record.logs[0]))}")
    else:
        print("Nothing to submit.")
    print(f"Follow it with: {status_command}")
    if wait_s is None:
        return 0
    return wait(chains, env, output, wait_s)


def wait(chains: list[Chain], env: dict[str, str], output: Path, poll_s: float) -> int:
    """Poll the queue until no job of the sweep is in it; 0 if every chain is done, else 1."""
    ids = {r.job_id for r in latest_records(output).values()}
    shown_counts = None
    while True:
        queue = slurm_queue() or {}
        live = Counter(queue[i].state.lower() for i in ids if i in queue and queue[i].state in LIVE_STATES)
        counts = ", ".join(f"{n} {state}" for state, n in sorted(live.items()))
        if counts != shown_counts:
            print(f"{time.strftime('%H:%M:%S')} jobs in the queue: {counts or 'none'}", flush=True)
            shown_counts = counts
        if not live:
            break
        time.sleep(poll_s)
    final = chain_states(chains, env, output)
    done = sum(s.state == "done" for s in final)
    print(f"{done} of {len(chains)} chains done.")
    failed = [s for s in final if s.state != "done"]
    if failed:
        print(f"{len(failed)} not done:\n" + "\n".join(s.line() for s in failed))
        return 1
    return 0

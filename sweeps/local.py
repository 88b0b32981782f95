"""The local launcher: chains on this machine in parallel slots (GPUs round-robin, else a share of
the cores), each chain's console in its log, interruption, and the failure report.

Each slot has a warm worker (engine/warm), started when the slot first runs a step, through which
its runs skip the interpreter's start-up and the reading of the weights (results are the same bit
for bit); `warm=False` (tools/sweep.py --no-warm) starts every run as its own process.

A stop (Ctrl-C, SIGTERM, SIGHUP) ends the running steps and starts no new one; train.py writes
checkpoints and results.json atomically and results.json only once a run has finished, so
rerunning the same sweep skips what finished and resumes the rest.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from engine.errors import UsageError
from engine.processes import signal_tree
from engine.warm.owner import WarmWorker, unusable
from sweeps.plan import Chain, Step
from sweeps.steps import failure, finished, newest_log, shown, start_step, step_done


def visible_gpus() -> list[str]:
    """CUDA_VISIBLE_DEVICES if set, else the GPUs nvidia-smi lists (none without it)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() not in ("", "-1")]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return out.stdout.split() if out.returncode == 0 else []


def slot_envs(jobs: int, gpus: list[str], nproc: int = 1) -> list[dict[str, str]]:
    """Per parallel slot: a GPU, round-robin (with NPROC > 1, a group of NPROC GPUs for one DDP run);
    on CPU, an equal share of the cores (OMP_NUM_THREADS, unless the environment sets it)."""
    if gpus:
        groups = [gpus[i:i + nproc] for i in range(0, len(gpus) - nproc + 1, nproc)]
        if not groups:
            raise UsageError(f"NPROC={nproc} asks for {nproc} GPUs per run, but only {len(gpus)} are visible "
                             f"({','.join(gpus)}): lower NPROC or set CUDA_VISIBLE_DEVICES")
        return [{"CUDA_VISIBLE_DEVICES": ",".join(groups[i % len(groups)])} for i in range(jobs)]
    if "OMP_NUM_THREADS" in os.environ:
        return [{} for _ in range(jobs)]
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    return [{"OMP_NUM_THREADS": threads} for _ in range(jobs)]


@dataclass
class Outcome:
    chain: Chain
    ran: int = 0
    skipped: int = 0
    failed: Step | None = None
    reason: str = ""


class SlotWorkers:
    """A warm worker per slot, started when the slot first needs one, started anew when one has
    stopped taking commands (a source file changed), stopped with the sweep. A slot whose worker
    fails to start runs its steps as their own processes (the worker's log says why)."""

    def __init__(self, env: dict[str, str], slots: list[dict[str, str]], log_dir: Path):
        self.envs = [{**os.environ, **env, **slot} for slot in slots]
        self.log_dir = log_dir
        self.workers: dict[int, WarmWorker] = {}
        self.failed: set[int] = set()
        self.lock = threading.Lock()
        self.why_not = unusable(self.envs[0]) if self.envs else None

    def env_for(self, slot: int) -> dict[str, str]:
        """What a step in `slot` adds to its environment to run in the slot's worker ({}: none)."""
        if self.why_not or slot in self.failed:
            return {}
        worker = self.workers.get(slot)
        if worker is None or not worker.alive():
            with self.lock:
                if worker is not None:
                    worker.stop()
                worker = self.workers[slot] = WarmWorker(self.envs[slot], self.log_dir / f"warm-worker-{slot}.log")
                worker.start()
        if worker.wait_ready():
            return worker.env_for_commands()
        self.failed.add(slot)
        return {}

    def stop(self) -> None:
        with self.lock:
            for worker in self.workers.values():
                worker.stop()


class Runner:
    """Runs chains on a fixed set of slots (GPU or thread share), each chain's console to its log."""

    def __init__(self, env: dict[str, str], log_dir: Path, slots: list[dict[str, str]], warm: bool = True):
        self.env = env
        self.log_dir = log_dir
        self.slot_envs = slots
        self.slots: queue.Queue[int] = queue.Queue()
        for slot in range(len(slots)):
            self.slots.put(slot)
        self.workers = SlotWorkers(env, slots, log_dir) if warm else None
        self.lock = threading.Lock()
        self.running: set[subprocess.Popen] = set()
        self.stopping = False

    def stop(self) -> None:
        """No new step starts; the running ones (and their children) get SIGTERM."""
        with self.lock:
            self.stopping = True
            for proc in self.running:
                signal_tree(proc.pid)

    def close(self) -> None:
        """Stop the slots' warm workers."""
        if self.workers is not None:
            self.workers.stop()

    def run_chain(self, chain: Chain) -> Outcome:
        slot = self.slots.get()
        try:
            return self._run_chain(chain, slot)
        finally:
            self.slots.put(slot)

    def _run_chain(self, chain: Chain, slot: int) -> Outcome:
        outcome = Outcome(chain)
        with open(self.log_dir / f"{chain.name}.log", "a", buffering=1) as log:
            for step in chain.steps:
                command = step.command(self.env)
                if step_done(step, self.env):
                    log.write(f"# finished earlier, skipped: {command}\n")
                    outcome.skipped += 1
                    continue
                log.write(f"$ {command}\n")
                warm = self.workers.env_for(slot) if self.workers is not None and not self.stopping else {}
                with self.lock:
                    if self.stopping:
                        return outcome
                    proc = start_step(step, self.env, log, {**self.slot_envs[slot], **warm})
                    self.running.add(proc)
                code = proc.wait()
                with self.lock:
                    self.running.discard(proc)
                    if self.stopping:
                        return outcome
                outcome.ran += 1
                reason = failure(step, code)
                if reason:
                    outcome.failed, outcome.reason = step, reason
                    log.write(f"# FAILED ({outcome.reason}); the chain stops here\n")
                    return outcome
        return outcome


def describe(outcome: Outcome, log_dir: Path) -> str:
    step = outcome.failed
    unfinished = [d for d in step.out_dirs if not finished(d)] or list(step.out_dirs)
    run_log = newest_log(unfinished[0])
    where = shown(run_log) if run_log else None
    return (f"  {step.function} {' '.join(step.args)}: {outcome.reason}\n"
            f"    run log:   {where or f'none in {unfinished[0]} (train.py did not start)'}\n"
            f"    sweep log: {log_dir / (outcome.chain.name + '.log')}")


def run_all(runner: Runner, chains: list[Chain], jobs: int) -> list[Outcome]:
    """Every chain's outcome; on KeyboardInterrupt, stops the runner and waits for its threads."""
    outcomes: list[Outcome] = []
    with tqdm(total=len(chains), unit="chain", disable=None, file=sys.stderr) as bar, \
            ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(runner.run_chain, c) for c in chains]
        try:
            for future in as_completed(futures):
                outcome = future.result()
                outcomes.append(outcome)
                state = "FAILED" if outcome.failed else "done"
                tqdm.write(f"{state:6} {outcome.chain.name} "
                           f"({outcome.ran} steps run, {outcome.skipped} finished earlier)")
                bar.update(1)
        except KeyboardInterrupt:
            runner.stop()
            for future in futures:
                future.cancel()
            raise
    return outcomes


def new_log_dir(output: Path, protocol: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = output / "sweeps" / (f"{protocol}-{stamp}" + (f"-{n}" if n else ""))
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"Could not create a sweep log folder under {output / 'sweeps'}")


def nproc_setting() -> int:
    """NPROC from the environment: processes (GPUs) per run, which scripts/common.sh starts with torchrun."""
    value = os.environ.get("NPROC", "1") or "1"
    if not value.isdigit() or int(value) < 1:
        raise UsageError(f"NPROC={value!r}: set it to the number of processes (GPUs) per run, 1 or more")
    return int(value)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def run_sweep(chains: list[Chain], protocol: str, env: dict[str, str], jobs: int, output: Path,
              warm: bool = True) -> int:
    """Run every chain; 0 when all finished, 1 when any failed, 130 when stopped. `warm`: through
    a warm worker per slot (engine/warm), else every run as its own process."""
    log_dir = new_log_dir(output, protocol)
    (log_dir / "commands.txt").write_text("".join(s.command(env) + "\n" for c in chains for s in c.steps))
    gpus = visible_gpus()
    slots = slot_envs(jobs, gpus, nproc_setting())
    threads = os.environ.get("OMP_NUM_THREADS") or slots[0].get("OMP_NUM_THREADS")
    where = f"GPUs {','.join(gpus)}" if gpus else f"CPU, OMP_NUM_THREADS={threads}"
    runner = Runner(env, log_dir, slots, warm)
    if runner.workers is not None and runner.workers.why_not:
        where += f"; runs start as their own processes ({runner.workers.why_not})"
    elif runner.workers is None:
        where += "; runs start as their own processes (--no-warm)"
    print(f"{len(chains)} chains, {jobs} at a time ({where}); logs in {log_dir}", flush=True)
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        outcomes = run_all(runner, chains, jobs)
    except KeyboardInterrupt:
        print("\nStopped. Rerun the same command to continue: finished runs are skipped, unfinished ones resume.",
              file=sys.stderr)
        return 130
    finally:
        runner.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = [o for o in outcomes if o.failed]
    ran, skipped = sum(o.ran for o in outcomes), sum(o.skipped for o in outcomes)
    print(f"{len(chains) - len(failed)} of {len(chains)} chains done ({ran} steps run, {skipped} finished earlier).")
    if failed:
        print(f"{len(failed)} failed:\n" + "\n".join(describe(o, log_dir) for o in failed))
        return 1
    return 0

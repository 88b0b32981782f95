"""One step of a chain, wherever it runs (this machine or a cluster job): the train.py commands
it would run, whether they have already finished, how it is started, and why it failed.

A step's runs are predicted from the scripts themselves (scripts/common.sh prints its train.py
commands with PRINT_RUNS set) and judged by engine.launch.run_state, so the skip rule here is
train.py's own: a run counts as finished only if its results.json carries this very manifest.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import IO

import trainers  # noqa: F401  (registers the trainers, whose config nodes run_state reads)
from engine.launch import command_argv, run_state
from sweeps.plan import Step

REPO = Path(__file__).resolve().parents[1]


def step_environ(step: Step, env: dict[str, str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment scripts/run.sh gets: ours, the sweep's DATA/OUTPUT, then `extra` (a GPU slot)."""
    return {**os.environ, "PYTHON": os.environ.get("PYTHON", sys.executable), **env, **(extra or {}),
            "SHOTS": str(step.shots)}


def run_path(run_dir: str) -> Path:
    """A run folder of the plan (relative to the repo root unless OUTPUT is absolute)."""
    return REPO / run_dir


def finished(run_dir: str) -> bool:
    return (run_path(run_dir) / "results.json").is_file()


def planned_runs(step: Step, env: dict[str, str]) -> list[list[str]]:
    """The train.py argument lists a step would run (scripts/common.sh with PRINT_RUNS)."""
    out = subprocess.run(["bash", "scripts/run.sh", step.function, *step.args], cwd=REPO, capture_output=True,
                         text=True, env={**step_environ(step, env), "PRINT_RUNS": "1"})
    if out.returncode:
        return []
    return [command_argv(line, REPO) for line in out.stdout.splitlines() if line.startswith("train.py ")]


def run_states(step: Step, env: dict[str, str]) -> list[tuple[str, str, str]]:
    """(folder, state, detail) of each run of the step (engine.launch.run_state)."""
    return [run_state(argv) for argv in planned_runs(step, env)]


def step_done(step: Step, env: dict[str, str]) -> bool:
    """Whether every run of the step is finished with this very manifest (engine/run_identity.py),
    so the step can be skipped without starting it."""
    states = run_states(step, env)
    return bool(states) and all(state == "finished" for _, state, _ in states)


def start_step(step: Step, env: dict[str, str], log: IO[str], extra: dict[str, str] | None = None) -> subprocess.Popen:
    """`bash scripts/run.sh STEP ...` from the repo root, its console to `log`."""
    return subprocess.Popen(["bash", "scripts/run.sh", step.function, *step.args], cwd=REPO,
                            env=step_environ(step, env, extra), stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


def failure(step: Step, code: int) -> str:
    """Why a step that exited with `code` failed; "" if it finished (every run has results.json)."""
    if code:
        return f"exited with {code}"
    unfinished = [d for d in step.out_dirs if not finished(d)]
    return f"left no results.json in {unfinished[0]}" if unfinished else ""


def newest_log(run_dir: str) -> Path | None:
    """The run's newest console log (train.py keeps log.txt and names a rerun's log.txt-<time>)."""
    logs = list(run_path(run_dir).glob("log.txt*"))
    return max(logs, key=lambda p: p.stat().st_mtime) if logs else None


def shown(path: Path) -> Path:
    """A path as the user gave the output tree: relative to the repo root when inside it."""
    return path.relative_to(REPO) if path.is_absolute() and path.is_relative_to(REPO) else path

"""log.txt as a full copy of the console, and the machine-readable results.json."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, TextIO

import torch

from engine.cli import error_block
from engine.errors import UserError
from engine.io import atomic_write_text


class Tee:
    """Writes to the console and a log file (Dassl's Logger, for stdout and stderr).

    If the log file cannot be written (a full disk), the console goes on and one warning says
    where the log stopped, instead of the run dying mid-line.
    """

    def __init__(self, console: TextIO, file: TextIO):
        self.console = console
        self.file: TextIO | None = file

    def write(self, text: str) -> None:
        self.console.write(text)
        if self.file is None:
            return
        try:
            self.file.write(text)
            self.file.flush()
        except (OSError, ValueError) as e:
            name = getattr(self.file, "name", "the log file")
            self.file = None
            self.console.write(f"\nwarning: cannot write {name} ({e}); the log stops here, the console goes on\n")

    def flush(self) -> None:
        self.console.flush()
        if self.file is not None:
            try:
                self.file.flush()
            except (OSError, ValueError):
                self.file = None

    def isatty(self) -> bool:
        return self.console.isatty()


def new_log_path(output_dir: str | Path) -> Path:
    """OUT/log.txt, or for a rerun `log.txt-<timestamp>` as Dassl names it, with `.1`, `.2`, ...
    added when a log of that second exists: created exclusively, so no two runs share one."""
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S")
    names = ["log.txt", f"log.txt-{stamp}"] + [f"log.txt-{stamp}.{n}" for n in range(1, 1000)]
    for name in names:
        try:
            os.close(os.open(folder / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return folder / name
        except FileExistsError:
            continue
    raise RuntimeError(f"Could not create a new log file in {folder}")


@contextmanager
def setup_logger(output_dir: str | Path) -> Iterator[Path]:
    """Tee stdout/stderr to OUT/log.txt for the duration of a run.

    An existing log is kept and the new one is `log.txt-<timestamp>`, as Dassl does, so
    a rerun never overwrites a finished log. A crash's traceback is logged too; a user error
    is logged as the same `error:` block the console shows.
    """
    path = new_log_path(output_dir)
    saved = sys.stdout, sys.stderr
    with open(path, "a", buffering=1) as log:
        sys.stdout, sys.stderr = Tee(saved[0], log), Tee(saved[1], log)
        try:
            yield path
        except UserError as e:
            _log_quietly(log, error_block(str(e)) + "\n")
            raise
        except BaseException:
            _log_quietly(log, traceback.format_exc())
            raise
        finally:
            sys.stdout, sys.stderr = saved


def _log_quietly(log: TextIO, text: str) -> None:
    try:
        log.write(text)
    except (OSError, ValueError):
        pass


def free_name(path: Path) -> Path:
    """`path`, or `path.1`, `path.2`, ... : the first that does not exist."""
    n, candidate = 0, path
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def environment() -> dict:
    import open_clip

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "open_clip": open_clip.__version__,
        "platform": platform.platform(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


class ResultsWriter:
    """OUT/results.json, written once a run has finished: its presence means "finished".

    `record` keeps an evaluated split in memory; `write` puts every recorded split in the
    file. Evaluations during training (per-epoch val for TEST.FINAL_MODEL best_val) are only
    recorded, so a run killed mid-training never looks finished to the skip rule of
    scripts/common.sh's run_job. The first write of a run moves a results.json left by an
    earlier run aside to `results.json-<timestamp>`, so no result a user already has is lost.
    """

    def __init__(self, output_dir: str | Path, meta: Callable[[], dict]):
        self.path = Path(output_dir) / "results.json"
        self.meta = meta
        self.evaluations: dict[str, dict] = {}
        self._claimed = False

    def record(self, split: str, metrics: dict, **extra) -> None:
        self.evaluations[split] = {"metrics": {k: float(v) for k, v in metrics.items()}, **extra}

    def write(self) -> None:
        if not self._claimed and self.path.exists():
            self.path.rename(free_name(self.path.with_name(f"results.json-{time.strftime('%Y-%m-%d-%H-%M-%S')}")))
        self._claimed = True
        payload = {**self.meta(), "evaluations": self.evaluations, "environment": environment()}
        atomic_write_text(self.path, json.dumps(payload, indent=2))

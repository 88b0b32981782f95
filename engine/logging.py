"""log.txt as a full copy of the console, and the machine-readable results.json."""
from __future__ import annotations

import json
import platform
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO

import torch

from engine.io import atomic_write_text


class Tee:
    """Writes to the console and a log file (Dassl's Logger, for stdout and stderr)."""

    def __init__(self, console: TextIO, file: TextIO):
        self.console = console
        self.file = file

    def write(self, text: str) -> None:
        self.console.write(text)
        self.file.write(text)
        self.file.flush()

    def flush(self) -> None:
        self.console.flush()
        self.file.flush()

    def isatty(self) -> bool:
        return self.console.isatty()


@contextmanager
def setup_logger(output_dir: str | Path) -> Iterator[Path]:
    """Tee stdout/stderr to OUT/log.txt for the duration of a run.

    An existing log is kept and the new one is `log.txt-<timestamp>`, as Dassl does, so
    a rerun never overwrites a finished log. A crash's traceback is logged too.
    """
    path = Path(output_dir) / "log.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path = path.with_name(f"log.txt-{time.strftime('%Y-%m-%d-%H-%M-%S')}")
    saved = sys.stdout, sys.stderr
    with open(path, "a", buffering=1) as log:
        sys.stdout, sys.stderr = Tee(saved[0], log), Tee(saved[1], log)
        try:
            yield path
        except BaseException:
            log.write(traceback.format_exc())
            raise
        finally:
            sys.stdout, sys.stderr = saved


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

    def __init__(self, output_dir: str | Path, meta: dict):
        self.path = Path(output_dir) / "results.json"
        self.meta = meta
        self.evaluations: dict[str, dict] = {}
        self._claimed = False

    def record(self, split: str, metrics: dict, **extra) -> None:
        self.evaluations[split] = {"metrics": {k: float(v) for k, v in metrics.items()}, **extra}

    def write(self) -> None:
        if not self._claimed and self.path.exists():
            self.path.rename(self.path.with_name(f"results.json-{time.strftime('%Y-%m-%d-%H-%M-%S')}"))
        self._claimed = True
        payload = {**self.meta, "evaluations": self.evaluations, "environment": environment()}
        atomic_write_text(self.path, json.dumps(payload, indent=2))

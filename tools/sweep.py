"""Run a protocol for several methods, datasets and seeds with the methods' own script commands,
on this machine or as SLURM jobs: `python tools/sweep.py --protocol base2new --methods CoOp ...`
(the options: --help, or sweeps/command.py; scaling out: docs/SCALING.md)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds the packages

from engine.cli import run_cli  # noqa: E402
from sweeps.command import main  # noqa: E402

if __name__ == "__main__":
    run_cli(main)

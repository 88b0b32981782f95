"""One comparison table from the output tree the scripts write: `python tools/compare.py output/
--protocol base2new` (the options and the table's columns: --help, or comparison/command.py)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds the packages

from comparison.command import main  # noqa: E402
from engine.cli import run_cli  # noqa: E402

if __name__ == "__main__":
    run_cli(main)

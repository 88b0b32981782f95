"""Run a command whose train.py runs start from one warm worker (engine/warm): the toolbox imported
and the backbone weights read once, not in every run; results are the same bit for bit.

    python tools/warm.py bash scripts/coop/main.sh caltech101 vit_b16_ep50 end 16 16 False
    python tools/warm.py [--log FILE] -- COMMAND ...

Every run the command makes through scripts/common.sh's run_job goes to the worker (tools/sweep.py
does this by itself, one worker per slot). The command's exit status is returned; the worker's
console goes to --log (default: a file in the system's temp folder, named on stderr if it fails).
"""
import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root holds the packages

from engine.cli import run_cli  # noqa: E402
from engine.warm.owner import run_with_worker  # noqa: E402


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log", type=Path, default=Path(tempfile.gettempdir()) / f"promptlab-warm-{os.getpid()}.log")
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the command to run, e.g. bash scripts/coop/main.sh caltech101 vit_b16_ep50 end 16 16 False")
    return run_with_worker(command, args.log)


if __name__ == "__main__":
    run_cli(main)

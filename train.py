"""CoOp's command line, unchanged: python train.py --root DATA --trainer CoOp ... [KEY VALUE ...]

The flags, config merge order and run lifecycle live in engine/launch.py; this file registers
the datasets and trainers and runs it as a command (engine/cli.py: user errors without traceback).
"""
from __future__ import annotations

import datasets  # noqa: F401  (registers the datasets)
import trainers  # noqa: F401  (registers the trainers and their config nodes)
from engine.cli import run_cli
from engine.launch import main, parse_args, reset_cfg, run, setup_cfg

__all__ = ["main", "parse_args", "reset_cfg", "run", "setup_cfg"]

if __name__ == "__main__":
    run_cli(main)

"""Running trainer and dataset files written for Dassl and OpenAI's `clip` package.

`load_trainer_files` (train.py --trainer-file, tools/sweep.py --trainer-file) imports them with
promptlab's `dassl` and `clip` layers (compat/, thin re-exports of the modules here) in place;
what they register joins promptlab's registries. external/loader.py says how and why;
docs/EXTENDING.md ("Run a trainer written for Dassl") shows it end to end.
"""
from external.loader import ENV_VAR, load_trainer_files

__all__ = ["ENV_VAR", "load_trainer_files"]

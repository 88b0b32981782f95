"""Errors a user can fix, kept apart from bugs.

`train.py` and every `tools/*.py` print a `UserError` as one `error: ...` block (what went
wrong, where, how to fix it) without a traceback, and exit with its `exit_code`; anything
else is a bug and keeps its full traceback (engine/cli.py). Each class also derives from the
builtin exception that code and tests already expect (ValueError, FileNotFoundError, ...).
"""
from __future__ import annotations

import re


_WORKER_ERROR = re.compile(r"Caught \w+ in DataLoader worker process (\d+)\.\nOriginal Traceback")


class UserError(Exception):
    """A problem with the user's input (flags, config, files); exit code 1."""

    exit_code = 1

    def __init__(self, *args):
        if args and isinstance(args[0], str):
            args = (_without_worker_traceback(args[0], type(self)), *args[1:])
        super().__init__(*args)

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def _without_worker_traceback(message: str, cls: type) -> str:
    """A DataLoader worker re-raises its error in the main process as `cls(<the worker's whole
    traceback>)`; a user error keeps only its own message, and says where it was raised."""
    found = _WORKER_ERROR.match(message)
    marker = f"{cls.__module__}.{cls.__qualname__}: "
    if not found or marker not in message:
        return message
    return message[message.rindex(marker) + len(marker):].rstrip("\n") + \
        f"\n(raised in DataLoader worker process {found.group(1)})"


class UsageError(UserError, ValueError):
    """A command-line flag that cannot be used as given; exit code 2, like argparse's errors."""

    exit_code = 2


class ConfigError(UserError, ValueError):
    """A config key or value that cannot be what the user meant."""


class UnknownNameError(UserError, KeyError):
    """A name no registry has (a typo in --trainer, DATASET.NAME, ...)."""


class BackboneError(UserError, TypeError):
    """A backbone the method cannot open (e.g. a ResNet for a method that needs ViT tokens)."""


class DataError(UserError, ValueError):
    """A dataset, split or cache file whose content is wrong."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the run needs is not there."""


class RunMismatchError(UserError, RuntimeError):
    """An output folder, checkpoint or result belongs to another run."""


class RunLockedError(UserError, RuntimeError):
    """Another process is writing to the same output folder."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that is damaged, unsafe or made for another model."""


class TrainingDivergedError(UserError, RuntimeError):
    """A non-finite loss or learnable weight: the run stops before it can be written as finished."""

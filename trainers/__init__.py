"""Importing this package registers every trainer in TRAINER_REGISTRY.

Every module and subpackage of `trainers` is imported, so a new file whose class carries
`@TRAINER_REGISTRY.register()` reaches train.py, the sweeps and the comparisons without an
edit here (docs/EXTENDING.md).
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def import_submodules(package: str, path: list[str]) -> list[ModuleType]:
    """Import each direct submodule of `package` (found under `path`), sorted by name.

    Names starting with "_" are skipped. A module that fails to import stops everything
    with an ImportError naming it: a silently missing trainer would surface much later as
    "Unknown trainer".
    """
    modules = []
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        name = f"{package}.{info.name}"
        try:
            modules.append(importlib.import_module(name))
        except Exception as exc:
            raise ImportError(f"Importing trainer module {name!r} failed: {type(exc).__name__}: {exc}") from exc
    return modules


import_submodules(__name__, __path__)

"""Which `clip` package a trainer file imports.

MaPLe, IVLP, PromptSRC and MMRL ship their own `clip/`: OpenAI's package with their model code
inside (`clip.build_model(state_dict, design_details)`, `clip.build_model_MMRL`). Their trainer
files are that code's other half, so a file imports, in this order:
- the clip package the user named (`--trainer-file path/to/clip`; `compat/clip` names
  promptlab's layer), for every file;
- else its repository's own `clip/`: the first `clip/__init__.py` in the file's folder or the
  folders above it, up to the repository's root (the first folder holding `train.py` or `.git`);
- else promptlab's layer (compat/clip, external/openai_clip.py).

A repository's package is imported under the name `clip` only while that repository's files are
imported, so each file binds the package its repository ships (`from clip import clip`), and
afterwards `import clip` is promptlab's layer again. Names a file imports later, inside a
function, come from promptlab's layer. The package's `_MODELS` and `_download` are replaced by
promptlab's weight lookup (external/openai_clip.py): `load_clip_to_cpu(cfg)` reads the same
OpenAI-format weights file the built-in trainers load, without downloading, and promptlab's own
architectures (tiny-attr), which OpenAI's model code cannot build, are refused by name.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from external.errors import DOC, ExternalCodeError

STOCK = Path(__file__).resolve().parents[1] / "compat" / "clip"  # promptlab's layer

_state: dict[str, Path | None] = {"named": None}
# Repository packages imported so far: their folder -> their modules ("clip", "clip.model", ...).
IMPORTED: dict[Path, dict[str, types.ModuleType]] = {}


def is_package(path: Path) -> bool:
    """A folder named `clip` holding `__init__.py`: a clip package the user names."""
    return path.is_dir() and path.name == "clip" and (path / "__init__.py").is_file()


def name_package(path: Path) -> None:
    named = _state["named"]
    if named is not None and named != path:
        raise ExternalCodeError(f"Two clip packages are named with --trainer-file: {named} and {path}; name one")
    _state["named"] = path


def repository_package(file: Path) -> Path | None:
    for folder in file.parents:
        if is_package(folder / "clip"):
            return folder / "clip"
        if (folder / "train.py").is_file() or (folder / ".git").exists():
            return None
    return None


def package_for(file: Path) -> Path | None:
    """The clip package `file` imports; None: promptlab's layer."""
    chosen = _state["named"] or repository_package(file)
    return None if chosen is None or chosen == STOCK else chosen


def _take_clip_modules() -> dict[str, types.ModuleType]:
    return {name: sys.modules.pop(name) for name in list(sys.modules) if name == "clip" or name.startswith("clip.")}


def _import_package(package: Path) -> None:
    spec = importlib.util.spec_from_file_location("clip", package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["clip"] = module
    try:
        spec.loader.exec_module(module)
        api = importlib.import_module("clip.clip") if (package / "clip.py").is_file() else module
    except ImportError as e:
        raise ExternalCodeError(
            f"The clip package {package} (the trainer files' own) cannot be imported: {e}. Install what it needs, "
            f"or run the files on promptlab's clip layer: --trainer-file compat/clip ({DOC})"
        ) from e
    if hasattr(api, "_MODELS") and hasattr(api, "_download"):
        # imported only where a fork runs (tests/test_imports.py)
        from external import openai_clip

        api._MODELS = openai_clip.fork_models(package)
        api._download = openai_clip._download


@contextmanager
def importing(file: Path) -> Iterator[None]:
    """While `file` is imported, `clip` is the package it imports (see the module docstring)."""
    package = package_for(file)
    if package is None:
        yield
        return
    layer = _take_clip_modules()
    try:
        if package in IMPORTED:
            sys.modules.update(IMPORTED[package])
        else:
            try:
                _import_package(package)
            except BaseException:
                _take_clip_modules()  # never reused half-imported
                raise
        yield
    finally:
        modules = _take_clip_modules()
        if modules:
            IMPORTED[package] = modules
        sys.modules.update(layer)


def package_files(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)

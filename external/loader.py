"""Loading code written for Dassl and OpenAI's `clip`: trainer and dataset files, folders of
them, and their config keys (a repository's `extend_cfg`, or a YAML of defaults).

Where `dassl` and `clip` come from: compat/ holds promptlab's `dassl` and `clip` layers. It is
not a package, and `activate` puts it at the front of sys.path only in a process that loads
external code (train.py --trainer-file, tools/sweep.py --trainer-file, $PROMPTLAB_TRAINER_FILES):
- promptlab's own modules never import `dassl` or `clip` (tests/test_external.py checks), so
  an installed Dassl or OpenAI clip stays what `import dassl` / `import clip` gives elsewhere;
- in a process that runs external trainers, their files get promptlab's layers even where the
  real packages are installed (a one-line note names those): the registries must be ours;
- a repository's bundled Dassl fork is never imported: files are imported by path and their
  repository never goes on sys.path. Its own `clip/` is what its trainer files import
  (external/forks.py), as MaPLe's, PromptSRC's and MMRL's model code lives there.

The trainer that runs is the class the user named: a class in a named file (or a file of a named
folder) whose name is a built-in trainer's takes that name in this process, its log and its run
manifest name the file (`code_identity`), and the built-in keeps the name in every other process.
A repository's config keys are kept apart from the built-in trainers' (external/config_keys.py).

A file is imported as a module of a package `promptlab_external.<folder>_<hash>` made for its
folder (the folder's __init__.py is not run), so relative imports between its files work and
their names never collide with promptlab's `trainers` or `datasets` packages.
"""
from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import types
from pathlib import Path
from typing import Any, Iterable

from yacs.config import CfgNode as CN

from engine.cache import sha256_file
from engine.config import CONFIG_EXTENSIONS
from engine.errors import ConfigError, MissingFileError, UsageError
from engine.registry import TRAINER_REGISTRY
from external import config_keys, forks
from external.errors import DOC, ExternalCodeError

ENV_VAR = "PROMPTLAB_TRAINER_FILES"
COMPAT_DIR = Path(__file__).resolve().parents[1] / "compat"
PACKAGE = "promptlab_external"
_LAYERS = ("dassl", "clip")
_CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*")

# Every file loaded in this process: path -> "module" (imported), "extend_cfg" or "defaults".
LOADED: dict[Path, str] = {}
# The .py files the user named, directly or in a named folder: their classes may take built-in names.
NAMED: set[Path] = set()
# Built-in classes whose name a named file's class took in this process: (registry, name) -> class.
SHADOWED: dict[tuple[str, str], Any] = {}


# ---- activation ------------------------------------------------------------------------------------
def _outside_compat(path: str | None) -> bool:
    return path is not None and not Path(path).resolve().is_relative_to(COMPAT_DIR)


def activate() -> None:
    """Put compat/ first on sys.path (once), after promptlab's own trainers and datasets have
    registered, so that those keep their names (external/dassl_utils.Registry)."""
    if str(COMPAT_DIR) in sys.path:
        return
    for name in _LAYERS:
        module = sys.modules.get(name)
        if module is not None and _outside_compat(getattr(module, "__file__", None)):
            raise UsageError(
                f"A '{name}' package ({module.__file__}) was imported before promptlab's {name} layer could be "
                f"put in place. Load trainer files before anything imports {name} ({DOC})"
            )
        spec = importlib.util.find_spec(name) if module is None else None
        if spec is not None and _outside_compat(spec.origin):
            print(f"Note: the installed '{name}' ({spec.origin}) is not used in this process: "
                  f"trainer files get promptlab's {name} layer ({DOC})")
    importlib.import_module("trainers")
    importlib.import_module("datasets")
    from external.dassl_config import add_dassl_keys

    CONFIG_EXTENSIONS.extend([add_dassl_keys, add_external_keys])
    sys.path.insert(0, str(COMPAT_DIR))


# ---- which files ---------------------------------------------------------------------------------
def requested_paths(paths: Iterable[str] = ()) -> list[Path]:
    """The paths given plus those in $PROMPTLAB_TRAINER_FILES (os.pathsep-separated), resolved,
    each once, in order."""
    env = [p for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    out: list[Path] = []
    for raw in [*paths, *env]:
        path = Path(raw).expanduser().resolve()
        if not path.exists():
            raise MissingFileError(f"Trainer file {raw} does not exist (--trainer-file or ${ENV_VAR})")
        if path not in out:
            out.append(path)
    return out


def load_trainer_files(paths: Iterable[str] = ()) -> list[Path]:
    """Load trainer/dataset files, folders of them, extend_cfg sources, YAML defaults and a clip
    package (see `load_path`) from `paths` and $PROMPTLAB_TRAINER_FILES; returns the resolved
    paths. A clip package and the named files are noted before anything is imported."""
    requested = requested_paths(paths)
    if requested:
        activate()
    for path in requested:
        if forks.is_package(path):
            forks.name_package(path)
        else:
            NAMED.update(_python_files(path))
    for path in requested:
        load_path(path)
    return requested


def _python_files(path: Path) -> list[Path]:
    if path.is_dir():
        return [f for f in sorted(path.glob("*.py")) if not f.name.startswith("_")]
    return [path] if path.suffix == ".py" else []


def load_path(path: Path) -> None:
    """A folder: each of its *.py files (not starting with '_'); a folder named `clip` with an
    __init__.py: the clip package trainer files import (external/forks.py). A .yaml/.yml file:
    config defaults. A .py file that registers something (a `...REGISTRY.register` decorator or
    call): imported. A .py file that only defines `extend_cfg` (e.g. a repository's train.py):
    its extend_cfg adds config keys, and the file itself is not imported. Any other .py file:
    imported (a helper that registered files import)."""
    if forks.is_package(path):
        return
    if path.is_dir():
        for file in _python_files(path):
            load_path(file)
        return
    if path in LOADED:
        return
    if path.suffix in (".yaml", ".yml"):
        config_keys.SOURCES.append(config_keys.yaml_source(path))
        LOADED[path] = "defaults"
        return
    if path.suffix != ".py":
        raise UsageError(f"--trainer-file {path}: expected a .py file, a folder of them, a clip package folder, "
                         "or a .yaml of config defaults")
    tree = _parse(path)
    extend_cfg = _function(tree, "extend_cfg")
    if not _registers(tree) and extend_cfg is not None:
        config_keys.SOURCES.append(config_keys.extend_cfg_source(path, tree, extend_cfg))
        LOADED[path] = "extend_cfg"
        return
    _import(path)
    LOADED[path] = "module"


def _parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_text(), str(path))
    except SyntaxError as e:
        raise ExternalCodeError(f"{path}:{e.lineno}: {e.msg}") from None


def _registers(tree: ast.Module) -> bool:
    def registry_name(node: ast.expr) -> str:
        return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""

    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register"
        and registry_name(node.func.value).endswith("REGISTRY")
        for node in ast.walk(tree)
    )


def _function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    return next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name), None)


# ---- importing ---------------------------------------------------------------------------------------
def _package_for(folder: Path) -> str:
    """A package module whose __path__ is `folder`, made once per folder."""
    if PACKAGE not in sys.modules:
        root = types.ModuleType(PACKAGE)
        root.__path__ = []
        sys.modules[PACKAGE] = root
    safe = re.sub(r"\W", "_", folder.name) or "root"
    name = f"{PACKAGE}.{safe}_{hashlib.sha1(str(folder).encode()).hexdigest()[:8]}"
    if name not in sys.modules:
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        package.__file__ = None
        sys.modules[name] = package
    return name


def _import(path: Path) -> types.ModuleType:
    module_name = f"{_package_for(path.parent)}.{path.stem}"
    try:
        with forks.importing(path):
            return importlib.import_module(module_name)
    except ImportError as e:
        layer = (e.name or "").split(".")[0]
        package = forks.package_for(path)
        if layer == "clip" and package is not None:
            raise ExternalCodeError(f"{path}: {e}, in the clip package it imports, {package} ({DOC})") from e
        if layer in _LAYERS:
            raise ExternalCodeError(
                f"{path}: {e}. promptlab's Dassl and clip layers provide the names that prompt learners use; "
                f"this one is not among them ({DOC})"
            ) from e
        e.add_note(f"(while importing the trainer file {path})")
        raise


# ---- config keys ---------------------------------------------------------------------------------------
def add_external_keys(cfg: CN) -> None:
    """The CONFIG_EXTENSIONS entry: the nodes of built-in trainers whose name a file's class took
    (a file's CoOp reads TRAINER.COOP as the built-in declares it), DATASET.PROMPT_TEMPLATE
    (external/assumptions.py), then the files' own keys for the trainer cfg.TRAINER.NAME names
    (external/config_keys.py)."""
    cfg.DATASET.PROMPT_TEMPLATE = ""  # a template for files that look one up by dataset name
    for (registry, _), cls in SHADOWED.items():
        node = getattr(cls, "CONFIG_NODE", None)
        if registry == "TRAINER" and node and node not in cfg.TRAINER:
            cfg.TRAINER[node] = CN(dict(cls.CONFIG))
    config_keys.apply(cfg, class_files(cfg.TRAINER.NAME), [p for p, kind in LOADED.items() if kind == "module"])


def class_files(name: str) -> list[Path]:
    """The files of the external trainer registered as `name` and of its external bases; none for
    a built-in (or unknown) name."""
    cls = TRAINER_REGISTRY.get(name) if name in TRAINER_REGISTRY else None
    if cls is None or not is_external(cls):
        return []
    return [Path(inspect.getsourcefile(c)).resolve() for c in cls.__mro__ if is_external(c)]


def is_external(obj: Any) -> bool:
    return getattr(obj, "__module__", "").startswith(PACKAGE + ".")


def _config_paths(tree: ast.AST) -> set[tuple[str, ...]]:
    """The UPPER_CASE attribute chains read after a `cfg` name or attribute (cfg.A.B, self.cfg.A)."""
    paths = set()
    for node in ast.walk(tree):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            chain.append(node.id)
        chain.reverse()
        if "cfg" not in chain:
            continue
        keys = []
        for part in chain[chain.index("cfg") + 1:]:
            if not _CONFIG_KEY.fullmatch(part):
                break
            keys.append(part)
        if keys:
            paths.add(tuple(keys))
    return paths


def check_config_nodes(cls: type, cfg: CN) -> None:
    """A trainer file reading cfg.TRAINER.<NODE> or cfg.<NODE> that no config declares fails
    here, naming the node and how to declare it, rather than deep inside build_model."""
    source = inspect.getsourcefile(cls)
    if source is None:
        return
    missing = set()
    for keys in _config_paths(_parse(Path(source))):
        node = cfg
        for depth, key in enumerate(keys[:2]):
            if not isinstance(node, CN):
                break
            if key not in node:
                if depth == 0 or keys[0] == "TRAINER":
                    missing.add(".".join(keys[: depth + 1]))
                break
            node = node[key]
    if missing:
        raise ConfigError(
            f"{cls.__name__} ({source}) reads cfg.{', cfg.'.join(sorted(missing))}, which no config declares. "
            "Pass the file that declares them to --trainer-file as well: the repository's train.py (its "
            f"extend_cfg) or a YAML of defaults ({DOC})"
        )


def provenance(cls: type) -> dict:
    """What results.json records of an external trainer: its file, and every external module,
    config file and clip package file this process loaded (helpers that relative imports reached
    included), hashed."""
    modules = {Path(m.__file__) for name, m in list(sys.modules.items())
               if name.startswith(PACKAGE + ".") and getattr(m, "__file__", None)}
    packages = {p: "clip" for package in forks.IMPORTED for p in forks.package_files(package)}
    files = {**{p: "module" for p in modules}, **packages, **LOADED}
    return {
        "trainer_file": inspect.getsourcefile(cls),
        "files": [{"path": str(p), "kind": kind, "sha256": sha256_file(p)} for p, kind in sorted(files.items())],
    }


def code_identity(cls: type) -> dict:
    """What a run's manifest records of an external trainer's code, and compares before reusing a
    run: the class and its file, and the SHA-256 of the files of it and of its external bases (a
    subclass of a repository's trainer runs that code too), of the modules of their folders loaded
    in this process (their helpers) and of the clip packages they import. A changed file is
    another run."""
    classes = [c for c in cls.__mro__ if is_external(c)]
    files: set[Path] = set()
    packages: list[Path] = []
    for c in classes:
        file = Path(inspect.getsourcefile(c)).resolve()
        folder_package = c.__module__.rpartition(".")[0] + "."
        files.add(file)
        files.update(Path(m.__file__).resolve() for name, m in list(sys.modules.items())
                     if name.startswith(folder_package) and getattr(m, "__file__", None))
        package = forks.package_for(file)
        if package is not None and package not in packages:
            packages.append(package)
            files.update(forks.package_files(package))
    return {
        "class": cls.__qualname__,
        "file": str(Path(inspect.getsourcefile(cls)).resolve()),
        "clip": ", ".join(map(str, packages)) or "promptlab",
        "sha256": {str(p): sha256_file(p) for p in sorted(files)},
    }

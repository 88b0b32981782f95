"""Config keys that external code declares: a repository's `extend_cfg` (its train.py) or a YAML
of defaults, kept apart from promptlab's own keys per trainer.

Repositories declare their keys by rebuilding whole nodes, built-in ones included: KgCoOp's and
ProGrad's train.py replace `TRAINER.COOP` with their own (`CTX_INIT = False`, plus `W`), MaPLe's
and PromptSRC's replace `TRAINER.MAPLE`, MMRL's `TRAINER.MMRL`. Applied to every config, they
would change the built-in trainers' keys for every run of a sweep. So each source is run alone
on a copy of promptlab's config, and what it sets is applied per trainer (`TRAINER.NAME` is set
before the extensions run, engine/config.py):
- a built-in trainer gets only the keys promptlab's config lacks (new nodes such as `LOSS`, new
  keys such as `TRAINER.COOP.W`); every key it has keeps promptlab's value and type;
- an external trainer gets everything its sources set, as its repository's train.py would: the
  sources in its repository (a source applies to the trainer files in its folder and below, and
  to their subclasses elsewhere; a source whose folder holds no trainer file applies to every
  external trainer).
Two sources that give one key different values, for the same run, are an error naming the key,
both values and both files: no order of the files decides silently.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import yaml
from yacs.config import CfgNode as CN

from engine.errors import ConfigError
from external.errors import DOC, ExternalCodeError


@dataclass(frozen=True)
class KeySource:
    path: Path
    kind: str  # "extend_cfg" or "defaults"
    declare: Callable[[CN], None]

    def applies_to(self, class_files: list[Path], trainer_files: Iterable[Path]) -> bool:
        folder = self.path.parent
        return any(f.is_relative_to(folder) for f in class_files) or not any(f.is_relative_to(folder) for f in trainer_files)

    def assignments(self, base: CN, base_leaves: dict[str, Any]) -> dict[str, Any]:
        """The keys this source sets to a value promptlab's config does not have (dotted -> value)."""
        cfg = base.clone()
        self.declare(cfg)
        return {k: v for k, v in leaves(cfg) if k not in base_leaves or not _same(base_leaves[k], v)}

    def __str__(self) -> str:
        return f"{self.path} ({self.kind})"


SOURCES: list[KeySource] = []


def leaves(node: CN, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) of every value, an empty node counting as one."""
    for key, value in node.items():
        if isinstance(value, CN) and len(value):
            yield from leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _set(cfg: CN, dotted: str, value: Any, source: KeySource) -> None:
    *parents, leaf = dotted.split(".")
    node = cfg
    for depth, key in enumerate(parents):
        if key not in node:
            node[key] = CN()
        elif not isinstance(node[key], CN):
            raise ConfigError(f"{source}: {'.'.join(parents[:depth + 1])} is a value in the config, not a node with keys")
        node = node[key]
    node[leaf] = value.clone() if isinstance(value, CN) else value


def apply(cfg: CN, class_files: list[Path], trainer_files: Iterable[Path]) -> None:
    """Add the sources' keys to `cfg` for the trainer it names (see the module docstring);
    `class_files` are the files of that trainer's class and its external bases (a subclass of a
    repository's trainer gets that repository's keys), empty for a built-in trainer."""
    if not SOURCES:
        return
    trainer_files = list(trainer_files)
    base_leaves = dict(leaves(cfg))
    chosen: dict[str, tuple[Any, KeySource]] = {}
    for source in SOURCES:
        if class_files and not source.applies_to(class_files, trainer_files):
            continue
        for key, value in source.assignments(cfg, base_leaves).items():
            if not class_files and key in base_leaves:
                continue
            if key in chosen and not _same(chosen[key][0], value):
                other = chosen[key][1]
                raise ConfigError(
                    f"Config key {key} is {chosen[key][0]!r} in {other} and {value!r} in {source}, and both apply to "
                    f"trainer {cfg.TRAINER.NAME or '(none named)'}. Pass only one of the two files, or a YAML of "
                    f"defaults that sets {key} in place of one of them ({DOC})"
                )
            chosen[key] = (value, source)
    for key, (value, source) in chosen.items():
        _set(cfg, key, value, source)


# ---- reading the sources ----------------------------------------------------------------------------
def _imports_yacs(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").split(".")[0] == "yacs"
    return isinstance(node, ast.Import) and all(a.name.split(".")[0] == "yacs" for a in node.names)


def extend_cfg_source(path: Path, tree: ast.Module, function: ast.FunctionDef) -> KeySource:
    """The file's extend_cfg, compiled alone with the file's yacs imports (CN is predefined):
    a repository's train.py imports its whole tree, which must not be imported here."""
    body = [n for n in tree.body if _imports_yacs(n)] + [function]
    namespace: dict = {"CN": CN, "CfgNode": CN}
    exec(compile(ast.Module(body=body, type_ignores=[]), str(path), "exec"), namespace)
    extend = namespace["extend_cfg"]

    def declare(cfg: CN) -> None:
        try:
            extend(cfg)
        except NameError as e:
            raise ExternalCodeError(
                f"extend_cfg in {path} uses {e.name!r}, which is defined elsewhere in that file; only extend_cfg "
                f"itself is run. Write its keys as a YAML of defaults instead ({DOC})"
            ) from None

    return KeySource(path, "extend_cfg", declare)


def _merge_defaults(cfg: CN, values: dict, source: Path, prefix: str = "") -> None:
    for key, value in values.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            if key not in cfg:
                cfg[key] = CN()
            elif not isinstance(cfg[key], CN):
                raise ConfigError(f"{source}: {full} is a value in the config, not a node with keys")
            _merge_defaults(cfg[key], value, source, full + ".")
        else:
            cfg[key] = value


def yaml_source(path: Path) -> KeySource:
    """Keys (new or existing) with their default values, e.g. TRAINER: {KGCOOP: {W: 8.0}}."""
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys to default values")
    return KeySource(path, "defaults", lambda cfg: _merge_defaults(cfg, values, path))

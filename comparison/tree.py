"""Reading the output tree that scripts/common.sh lays out into test accuracies per run.

Every protocol keeps one run per folder `<dataset>/shots_<K>/<trainer>/<cfg>/seed<S>/` under a
part of the tree (base2new/train_base, cross_dataset/test, few_shot, ...); its figure is the test
accuracy train.py wrote to results.json (engine/logging.py: evaluations.test.metrics.accuracy).
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple

from engine.errors import DataError
from engine.run_identity import read_results

# CoOp's order of the 11 base-to-new / cross-dataset datasets, then the domain-generalisation targets.
DATASET_ORDER = ("imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                 "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
                 "imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
SEED_DIR = re.compile(r"seed(\d+)")
SHOTS_DIR = re.compile(r"shots_(\d+)")
RUN_GLOB = "*/shots_*/*/*/seed*/results.json"
RUN_PATTERN = "<dataset>/shots_<K>/<trainer>/<cfg>/seed<S>/results.json"


class RunKey(NamedTuple):
    dataset: str
    shots: int
    trainer: str
    cfg: str


@dataclass
class Part:
    """The runs of one part of the tree with their test accuracy, and those whose results.json has none."""

    root: Path
    runs: dict[RunKey, dict[int, float]] = field(default_factory=dict)
    untested: list[tuple[RunKey, int]] = field(default_factory=list)

    def run_dir(self, key: RunKey, seed: int) -> Path:
        return self.root / key.dataset / f"shots_{key.shots}" / key.trainer / key.cfg / f"seed{seed}"


def read_accuracy(path: Path, subsample: str | None = None) -> float | None:
    """The run's test accuracy, or None if its results.json has no test evaluation.

    `subsample` is the class split the tree holds (base for train_base, new for test_new): a
    results.json evaluated on other classes would put a wrong figure in the table, so it stops here.
    """
    data = read_results(path)
    found = data.get("subsample")
    if subsample and found not in (None, subsample):
        raise DataError(f"{path} holds an evaluation on the {found!r} classes, but this part of the tree is for the "
                         f"{subsample!r} classes: move the run to its own tree or rerun it with "
                         f"DATASET.SUBSAMPLE_CLASSES {subsample}")
    try:
        return float(data["evaluations"]["test"]["metrics"]["accuracy"])
    except (KeyError, TypeError):
        return None


def scan(root: Path, subsample: str | None = None) -> Part:
    """Every `RUN_PATTERN` under root; folders that do not follow the pattern are ignored."""
    part = Part(root)
    for path in sorted(root.glob(RUN_GLOB)):
        seed_dir, cfg_dir = path.parent, path.parent.parent
        trainer_dir, shots_dir = cfg_dir.parent, cfg_dir.parent.parent
        seed, shots = SEED_DIR.fullmatch(seed_dir.name), SHOTS_DIR.fullmatch(shots_dir.name)
        if not (seed and shots):
            continue
        key = RunKey(shots_dir.parent.name, int(shots.group(1)), trainer_dir.name, cfg_dir.name)
        accuracy = read_accuracy(path, subsample)
        if accuracy is None:
            part.untested.append((key, int(seed.group(1))))
        else:
            part.runs.setdefault(key, {})[int(seed.group(1))] = accuracy
    return part


class Method(NamedTuple):
    """One row of a comparison; shots is None in few-shot tables, where shots are the columns."""

    trainer: str
    cfg: str
    shots: int | None = None


def method_labels(methods: Iterable[Method]) -> dict[Method, str]:
    """The trainer's name; `Trainer (cfg)` when the tree has several configs of that trainer, and
    `Trainer (cfg, K shots)` when one config was run with several shot counts."""
    methods = set(methods)
    cfgs, shots = defaultdict(set), defaultdict(set)
    for m in methods:
        cfgs[m.trainer].add(m.cfg)
        shots[m.trainer, m.cfg].add(m.shots)
    labels = {}
    for m in methods:
        if len(shots[m.trainer, m.cfg]) > 1:
            labels[m] = f"{m.trainer} ({m.cfg}, {m.shots} shots)"
        elif len(cfgs[m.trainer]) > 1:
            labels[m] = f"{m.trainer} ({m.cfg})"
        else:
            labels[m] = m.trainer
    return labels


def dataset_order(names: Iterable[str]) -> list[str]:
    rank = {name: i for i, name in enumerate(DATASET_ORDER)}
    return sorted(set(names), key=lambda name: (rank.get(name, len(rank)), name))


@dataclass(frozen=True)
class Selection:
    """--methods (trainer names or trainer/cfg) and --datasets; empty selects everything."""

    methods: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()

    def check(self, keys: Iterable[RunKey], where: Path, published: Iterable[str] = ()) -> None:
        """Stop on a name the tree (or, for methods, the published rows) does not have."""
        keys = list(keys)
        methods = {k.trainer for k in keys} | {f"{k.trainer}/{k.cfg}" for k in keys} | set(published)
        for flag, asked, known in (("--methods", self.methods, methods),
                                   ("--datasets", self.datasets, {k.dataset for k in keys})):
            unknown = [name for name in asked if name not in known]
            if unknown:
                raise DataError(f"Unknown {flag} {', '.join(unknown)} (runs under {where}): choose from "
                                 f"{', '.join(sorted(known))}")

    def wants_method(self, trainer: str, cfg: str | None = None) -> bool:
        return not self.methods or trainer in self.methods or f"{trainer}/{cfg}" in self.methods

    def wants(self, key: RunKey) -> bool:
        return self.wants_method(key.trainer, key.cfg) and (not self.datasets or key.dataset in self.datasets)


def all_keys(*parts: Part) -> set[RunKey]:
    """Every run key of the parts, finished or not."""
    return {k for p in parts for k in p.runs} | {k for p in parts for k, _ in p.untested}


def untested_lines(root: Path, selection: Selection, *parts: Part) -> list[str]:
    return [f"{p.run_dir(k, s).relative_to(root)}: its results.json has no test accuracy "
            "(not finished, or TEST.NO_TEST)" for p in parts for k, s in p.untested if selection.wants(k)]


def seed_gaps(seeds_by_column: dict, label: str) -> list[str]:
    """A line per column that lacks a seed the method has on another column."""
    union = set().union(*seeds_by_column.values()) if seeds_by_column else set()
    return [f"{label}, {column}: no seed{seed} run (it has that seed elsewhere in this table)"
            for column, seeds in seeds_by_column.items() for seed in sorted(union - seeds)]

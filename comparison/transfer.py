"""Cross-dataset (xd) and domain-generalisation (dg) rows: a model trained on ImageNet, tested on targets.

Both read `cross_dataset/`: the source figure is the ImageNet test accuracy of the training run
(`train/imagenet/...`) or, for a method without one such as zero-shot CLIP, of an evaluation in
`test/imagenet/...`. xd's targets are the other datasets of `test/` (the papers' 10), dg's the
four ImageNet variants; the average is over the targets only, as in the papers' tables.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from comparison.reported import Reported, reported_labels
from comparison.stats import Stat, across_datasets, summarise
from comparison.tree import (RUN_PATTERN, Method, Selection, all_keys, dataset_order, method_labels, scan,
                             seed_gaps, untested_lines)
from engine.errors import DataError

SOURCE = "imagenet"
DG_TARGETS = ("imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r")
AVERAGE = "average"


@dataclass(frozen=True)
class TransferRow:
    method: str  # the table's label
    config: str
    cells: dict[str, Stat]  # source and targets this method has
    average: Stat | None  # over the targets it has
    covers: tuple[int, int] | None = None  # (targets it averages, targets in the table); None if published
    published: bool = False
    shots: int | None = None  # the source's training shots per class (None: a published number)


@dataclass
class Transfer:
    protocol: str  # xd or dg
    targets: list[str]
    rows: list[TransferRow]
    missing: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    source: str = SOURCE


def is_target(protocol: str, dataset: str) -> bool:
    return dataset in DG_TARGETS if protocol == "dg" else dataset != SOURCE and dataset not in DG_TARGETS


def published_rows(reported: list[Reported], targets: list[str]) -> list[TransferRow]:
    labels = reported_labels(reported)
    cells: dict[tuple[str, str], dict[str, Stat]] = defaultdict(dict)
    for r in reported:
        if r.dataset in (SOURCE, AVERAGE, *targets) and r.acc is not None:
            cells[labels[r], r.config][r.dataset] = Stat(r.acc)
    return [TransferRow(label, cfg, {d: s for d, s in c.items() if d != AVERAGE}, c.get(AVERAGE), published=True)
            for (label, cfg), c in cells.items()]


def transfer(root: Path, protocol: str, selection: Selection, reported: list[Reported]) -> Transfer:
    tree = root / "cross_dataset"
    train, test = scan(tree / "train"), scan(tree / "test")
    found = all_keys(train, test)
    if not found:
        raise DataError(f"No cross-dataset results under {tree}: looked for train/{SOURCE}/... (the source) and "
                         f"test/{RUN_PATTERN} (the targets); run a method's xd_train.sh and xd_test.sh first")
    selection.check(found, tree, {r.method for r in reported})
    reported = [r for r in reported if selection.wants_method(r.method, r.config)]
    sources: dict[Method, dict[int, float]] = defaultdict(dict)
    targets: dict[Method, dict[str, dict[int, float]]] = defaultdict(dict)
    for part in (test, train):  # a training run's own test accuracy wins over an evaluation of it
        for key, runs in part.runs.items():
            method = Method(key.trainer, key.cfg, key.shots)
            if key.dataset == SOURCE and selection.wants_method(key.trainer, key.cfg):
                sources[method].update(runs)
            elif part is test and is_target(protocol, key.dataset) and selection.wants(key):
                targets[method][key.dataset] = runs
    names = dataset_order(d for per in targets.values() for d in per)
    if not names:
        wanted = f"domain-generalisation targets ({', '.join(DG_TARGETS)})" if protocol == "dg" else \
            f"cross-dataset targets (datasets other than {SOURCE} and {', '.join(DG_TARGETS)})"
        raise DataError(f"No {wanted} under {tree / 'test'}: evaluate the ImageNet-trained models on them "
                         "with a method's xd_test.sh DATASET SEED")
    methods = set(sources) | set(targets)
    labels = method_labels(methods)
    result = Transfer(protocol, names, [], untested_lines(root, selection, train, test))
    for m in sorted(methods, key=labels.get):
        have = [t for t in names if t in targets[m]]
        cells = ({SOURCE: summarise(sources[m].values())} if sources[m] else {}) | \
                {t: summarise(targets[m][t].values()) for t in have}
        average = across_datasets([targets[m][t] for t in have]) if have else None
        result.rows.append(TransferRow(labels[m], m.cfg, cells, average, (len(have), len(names)), shots=m.shots))
        if not sources[m]:
            result.missing.append(f"{labels[m]}: no {SOURCE} source run (cross_dataset/train/{SOURCE} "
                                  f"or test/{SOURCE})")
        result.missing += [f"{labels[m]}: no {t} run (other methods have one)" for t in names if t not in targets[m]]
        result.missing += seed_gaps(({SOURCE: set(sources[m])} if sources[m] else {}) |
                                    {t: set(targets[m][t]) for t in have}, labels[m])
        if 0 < len(have) < len(names):
            result.partial.append(f"{labels[m]}: average over {len(have)} of the {len(names)} targets")
    result.rows += published_rows(reported, names)
    return result

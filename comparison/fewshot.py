"""Few-shot rows: accuracy per dataset and method, one column per shot count, and the average.

A method without learnable weights is one run per dataset under shots_0 (tools/sweep.py), so
its row has a 0-shot column only; a run is listed as missing where the method has that shot
count on another dataset, or where other methods have a dataset it lacks.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from comparison.stats import Stat, across_datasets, summarise
from comparison.tree import (RUN_PATTERN, Method, Selection, all_keys, dataset_order, method_labels, scan,
                             seed_gaps, untested_lines)
from engine.errors import DataError

AVERAGE = "average"


@dataclass(frozen=True)
class FewShotRow:
    dataset: str  # a dataset of the tree, or "average"
    method: str
    config: str
    cells: dict[int, Stat]  # shots -> accuracy
    covers: dict[int, tuple[int, int]] | None = None  # average rows: shots -> (datasets averaged, datasets in table)


@dataclass
class FewShot:
    datasets: list[str]
    shots: list[int]
    rows: list[FewShotRow]
    missing: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)


def few_shot(root: Path, selection: Selection) -> FewShot:
    tree = root / "few_shot"
    part = scan(tree)
    found = all_keys(part)
    if not found:
        raise DataError(f"No few-shot results under {tree}: looked for {RUN_PATTERN}; run a method's few-shot "
                         "script first (e.g. bash scripts/promptsrc/few_shot.sh DATASET SEED)")
    selection.check(found, tree)
    cells: dict[Method, dict[str, dict[int, dict[int, float]]]] = defaultdict(lambda: defaultdict(dict))
    for key, runs in part.runs.items():
        if selection.wants(key):
            cells[Method(key.trainer, key.cfg)][key.dataset][key.shots] = runs
    datasets = dataset_order(d for per in cells.values() for d in per)
    shots = sorted({k for per in cells.values() for by_shots in per.values() for k in by_shots})
    labels = method_labels(cells)
    result = FewShot(datasets, shots, [], untested_lines(root, selection, part))
    ordered = sorted(cells, key=labels.get)
    for m in ordered:
        own_shots = sorted({k for by_shots in cells[m].values() for k in by_shots})
        for d in datasets:
            lacking = [str(k) for k in own_shots if k not in cells[m].get(d, {})]
            if d not in cells[m]:
                result.missing.append(f"{labels[m]}: no {d} runs (other methods have them)")
            elif lacking:
                result.missing.append(f"{labels[m]}, {d}: no {', '.join(lacking)}-shot runs (it has them elsewhere)")
        result.missing += seed_gaps({f"{d} {k} shots": set(runs) for d, by_shots in cells[m].items()
                                     for k, runs in by_shots.items()}, labels[m])
    for d in datasets:
        result.rows += [FewShotRow(d, labels[m], m.cfg, {k: summarise(r.values()) for k, r in cells[m][d].items()})
                        for m in ordered if d in cells[m]]
    if len(datasets) > 1:
        for m in ordered:
            average: dict[int, Stat] = {}
            covers: dict[int, tuple[int, int]] = {}
            for k in shots:
                have = [cells[m][d][k] for d in datasets if k in cells[m].get(d, {})]
                if have:
                    average[k], covers[k] = across_datasets(have), (len(have), len(datasets))
                    if len(have) < len(datasets):
                        result.partial.append(f"{labels[m]}: {k}-shot average over {len(have)} of the "
                                              f"{len(datasets)} datasets")
            result.rows.append(FewShotRow(AVERAGE, labels[m], m.cfg, average, covers))
    return result

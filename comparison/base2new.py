"""Base-to-new rows: Base, New and HM per dataset and method, and the average over datasets.

A seed counts when it has both halves: `base2new/train_base/...` (accuracy on the base classes)
and `base2new/test_new/...` (the same model on the new classes). HM is given both ways: of the
seed means (the papers' table) and per seed, then mean ± std (what the seeds' spread means for HM).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from comparison.reported import Reported, reported_labels
from comparison.stats import Stat, across_datasets, seed_averages, summarise
from comparison.tree import (RUN_PATTERN, Method, Selection, all_keys, dataset_order, method_labels, scan,
                             seed_gaps, untested_lines)
from engine.errors import DataError
from engine.summary import harmonic_mean

AVERAGE = "average"
Pairs = dict[int, tuple[float, float]]  # seed -> (base accuracy, new accuracy)


@dataclass(frozen=True)
class Base2NewRow:
    dataset: str  # a dataset of the tree, or "average"
    method: str  # the table's label
    config: str
    base: Stat
    new: Stat
    hm_of_means: float
    hm_per_seed: Stat | None = None  # None for a published row
    covers: tuple[int, int] | None = None  # average rows: (datasets it averages, datasets in the table)
    published: bool = False
    shots: int | None = None  # training shots per class (None: a published number)


@dataclass
class Base2New:
    datasets: list[str]
    rows: list[Base2NewRow]
    missing: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)  # averages over fewer datasets than the table has


def dataset_row(dataset: str, label: str, cfg: str, pairs: Pairs, shots: int | None = None) -> Base2NewRow:
    base = summarise(b for b, _ in pairs.values())
    new = summarise(n for _, n in pairs.values())
    hm_per_seed = summarise(harmonic_mean(b, n) for b, n in pairs.values())
    return Base2NewRow(dataset, label, cfg, base, new, harmonic_mean(base.mean, new.mean), hm_per_seed, shots=shots)


def average_row(label: str, cfg: str, cells: dict[str, Pairs], total: int, shots: int | None = None) -> Base2NewRow:
    """Base and New: mean over datasets of the seed means; HM of those two averages, as the
    CoCoOp/MaPLe/PromptSRC average rows (MaPLe's README: 82.28 and 75.14 give HM 78.55). The
    per-seed HM is that of the per-seed averages, over the seeds every dataset has."""
    bases = [{s: b for s, (b, _) in pairs.items()} for pairs in cells.values()]
    news = [{s: n for s, (_, n) in pairs.items()} for pairs in cells.values()]
    base, new = across_datasets(bases), across_datasets(news)
    per_seed_base, per_seed_new = seed_averages(bases), seed_averages(news)
    hm_per_seed = summarise(harmonic_mean(per_seed_base[s], per_seed_new[s]) for s in per_seed_base)
    return Base2NewRow(AVERAGE, label, cfg, base, new, harmonic_mean(base.mean, new.mean), hm_per_seed,
                       (len(cells), total), shots=shots)


def published_rows(reported: list[Reported], datasets: list[str]) -> dict[str, list[Base2NewRow]]:
    labels = reported_labels(reported)
    rows = defaultdict(list)
    for r in reported:
        if r.dataset in datasets or r.dataset == AVERAGE:
            rows[r.dataset].append(Base2NewRow(r.dataset, labels[r], r.config, Stat(r.base), Stat(r.new), r.hm,
                                                   published=True))
    return rows


def base2new(root: Path, selection: Selection, reported: list[Reported]) -> Base2New:
    tree = root / "base2new"
    base, new = scan(tree / "train_base", subsample="base"), scan(tree / "test_new", subsample="new")
    found = all_keys(base, new)
    if not found:
        raise DataError(f"No base2new results under {tree}: looked for train_base/{RUN_PATTERN} and "
                         f"test_new/{RUN_PATTERN}; run a method's base2new scripts first (bash scripts/quickstart.sh)")
    selection.check(found, tree, {r.method for r in reported})
    reported = [r for r in reported if selection.wants_method(r.method, r.config)]
    keys = sorted(k for k in found if selection.wants(k))
    labels = method_labels(Method(k.trainer, k.cfg, k.shots) for k in keys)
    missing = untested_lines(root, selection, base, new)
    cells: dict[Method, dict[str, Pairs]] = defaultdict(dict)
    seeds_run: dict[Method, dict[str, set[int]]] = defaultdict(dict)
    for key in keys:
        method = Method(key.trainer, key.cfg, key.shots)
        b, n = base.runs.get(key, {}), new.runs.get(key, {})
        missing += [f"{new.run_dir(key, s).relative_to(root)}: not run (its train_base run exists)"
                    for s in sorted(b.keys() - n.keys())]
        missing += [f"{base.run_dir(key, s).relative_to(root)}: not run (its test_new run exists)"
                    for s in sorted(n.keys() - b.keys())]
        seeds_run[method][key.dataset] = b.keys() | n.keys()
        if b.keys() & n.keys():
            cells[method][key.dataset] = {s: (b[s], n[s]) for s in sorted(b.keys() & n.keys())}
    datasets = dataset_order(d for per in cells.values() for d in per)
    result = Base2New(datasets, [], missing)
    for method in sorted(seeds_run, key=labels.get):
        result.missing += seed_gaps({d: s for d, s in seeds_run[method].items() if s}, labels[method])
        result.missing += [f"{labels[method]}: no {d} runs (other methods have them)"
                           for d in datasets if d not in seeds_run[method]]
    ordered = sorted(cells, key=labels.get)
    published = published_rows(reported, datasets)
    for dataset in datasets:
        result.rows += [dataset_row(dataset, labels[m], m.cfg, cells[m][dataset], m.shots)
                        for m in ordered if dataset in cells[m]]
        result.rows += published[dataset]
    if len(datasets) > 1:
        for m in ordered:
            result.rows.append(average_row(labels[m], m.cfg, cells[m], len(datasets), m.shots))
            if len(cells[m]) < len(datasets):
                absent = [d for d in datasets if d not in cells[m]]
                result.partial.append(f"{labels[m]}: average over {len(cells[m])} of the {len(datasets)} datasets "
                                      f"(none for {', '.join(absent)})")
    result.rows += published[AVERAGE]
    return result

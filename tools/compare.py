"""Tabulate base-to-new results from the output tree the scripts write.

    python tools/compare.py output/ [--protocol base2new] [--format md|csv|latex|plain]

Reads `results.json` of `base2new/train_base/<dataset>/shots_<K>/<trainer>/<cfg>/seed<S>` (Base)
and of the matching `test_new/...` run (New). Per dataset and method it prints Base and New
as mean ± std over seeds and HM = 2·B·N/(B+N) of the two means (the convention of the
CoCoOp/MaPLe/PromptSRC tables), the seeds found, and an average row per method.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from tabulate import tabulate

FORMATS = {"md": "github", "csv": "csv", "latex": "latex", "plain": "simple"}


class RunKey(NamedTuple):
    dataset: str
    shots: str
    trainer: str
    cfg: str


def read_test_accuracy(path: Path) -> float:
    return json.loads(path.read_text())["evaluations"]["test"]["metrics"]["accuracy"]


def collect(root: Path, part: str) -> dict[RunKey, dict[str, float]]:
    """{run key: {seed folder: accuracy}} for one half (train_base or test_new)."""
    runs: dict[RunKey, dict[str, float]] = defaultdict(dict)
    for path in sorted((root / "base2new" / part).glob("*/shots_*/*/*/seed*/results.json")):
        seed_dir = path.parent
        cfg_dir = seed_dir.parent
        trainer_dir = cfg_dir.parent
        shots_dir = trainer_dir.parent
        key = RunKey(shots_dir.parent.name, shots_dir.name.removeprefix("shots_"), trainer_dir.name, cfg_dir.name)
        runs[key][seed_dir.name] = read_test_accuracy(path)
    return runs


def harmonic_mean(base: float, new: float) -> float:
    return 2 * base * new / (base + new) if base + new else 0.0


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


class Row(NamedTuple):
    key: RunKey
    base: tuple[float, float]
    new: tuple[float, float]
    hm: float
    seeds: int
    missing: list[str]


def base2new_rows(root: Path) -> list[Row]:
    base, new = collect(root, "train_base"), collect(root, "test_new")
    rows = []
    for key in sorted(set(base) | set(new)):
        seeds = sorted(set(base.get(key, {})) & set(new.get(key, {})))
        missing = [f"{part}/{s}" for part, runs in (("train_base", base), ("test_new", new))
                   for s in sorted(set(base.get(key, {})) | set(new.get(key, {}))) if s not in runs.get(key, {})]
        if not seeds:
            rows.append(Row(key, (float("nan"), 0.0), (float("nan"), 0.0), float("nan"), 0, missing))
            continue
        b = mean_std([base[key][s] for s in seeds])
        n = mean_std([new[key][s] for s in seeds])
        rows.append(Row(key, b, n, harmonic_mean(b[0], n[0]), len(seeds), missing))
    return rows


def average_rows(rows: list[Row]) -> list[list]:
    """Per method (trainer, cfg, shots): the mean over datasets of the seed means."""
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for row in rows:
        if row.seeds:
            groups[(row.key.trainer, row.key.cfg, row.key.shots)].append(row)
    out = []
    for (trainer, cfg, shots), members in sorted(groups.items()):
        b = statistics.fmean(r.base[0] for r in members)
        n = statistics.fmean(r.new[0] for r in members)
        out.append([f"average ({len(members)})", trainer, cfg, shots, f"{b:.2f}", f"{n:.2f}",
                    f"{harmonic_mean(b, n):.2f}", "", ""])
    return out


def render(rows: list[Row], fmt: str) -> str:
    def pm(ms: tuple[float, float]) -> str:
        return f"{ms[0]:.2f} ± {ms[1]:.2f}"

    table = [[r.key.dataset, r.key.trainer, r.key.cfg, r.key.shots, pm(r.base), pm(r.new), f"{r.hm:.2f}",
              r.seeds, ", ".join(r.missing)] for r in rows]
    if len({r.key.dataset for r in rows}) > 1:
        table += average_rows(rows)
    headers = ["dataset", "method", "config", "shots", "Base", "New", "HM", "seeds", "missing"]
    return tabulate(table, headers=headers, tablefmt=FORMATS[fmt])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="the output folder holding base2new/")
    p.add_argument("--protocol", choices=["base2new"], default="base2new")
    p.add_argument("--format", choices=sorted(FORMATS), default="plain")
    args = p.parse_args(argv)
    rows = base2new_rows(args.root)
    if not rows:
        raise SystemExit(f"No base2new results under {args.root / 'base2new'}: run a base2new script first")
    print(render(rows, args.format))
    print("HM is the harmonic mean of the mean Base and mean New accuracies; ± is the std over seeds.")


if __name__ == "__main__":
    main()

"""Tables (md, latex, plain) and CSV for the rows of tools/compare.py, with their footnotes.

The CSV holds one number per cell (empty where there is none, e.g. the std of a published number)
so scripts can read it; its columns are listed in CSV_COLUMNS and in tools/compare.py --help.
"""
from __future__ import annotations

import csv
import io

from tabulate import tabulate

from comparison.base2new import Base2New
from comparison.fewshot import FewShot
from comparison.stats import Stat, is_missing
from comparison.transfer import Transfer

TABLE_FORMATS = {"md": "github", "latex": "latex_booktabs", "plain": "simple"}
CSV_COLUMNS = {
    "base2new": ["dataset", "method", "config", "shots", "seeds", "base_mean", "base_std", "new_mean", "new_std",
                 "hm_of_means", "hm_per_seed_mean", "hm_per_seed_std"],
    "transfer": ["dataset", "role", "method", "config", "shots", "seeds", "acc_mean", "acc_std"],
    "fewshot": ["dataset", "method", "config", "shots", "seeds", "acc_mean", "acc_std"],
}
STD_NOTE = "± is the standard deviation over seeds (ddof 0, as CoOp's parse_test_res.py)"
Result = Base2New | Transfer | FewShot


def cell(stat: Stat | None, covers: tuple[int, int] | None = None) -> str:
    """`mean ± std`, the mean alone for a published number, `-` for none; (k/n) marks a partial average."""
    if stat is None or is_missing(stat.mean):
        return "-"
    text = f"{stat.mean:.2f}" if is_missing(stat.std) else f"{stat.mean:.2f} ± {stat.std:.2f}"
    return f"{text} ({covers[0]}/{covers[1]})" if covers and covers[0] < covers[1] else text


def number(value: float | int | None) -> str:
    return "" if is_missing(value) else str(value) if isinstance(value, int) else f"{value:.4f}"


def seed_span(stats: list[Stat]) -> str:
    counts = sorted({s.seeds for s in stats if s.seeds is not None})
    return "" if not counts else str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"


def base2new_table(result: Base2New) -> tuple[list[str], list[list], list[list]]:
    shown, rows = [], []
    for r in result.rows:
        partial = r.covers and r.covers[0] < r.covers[1]
        dataset = f"{r.dataset} ({r.covers[0]}/{r.covers[1]})" if partial else r.dataset
        shown.append([dataset, r.method, number(r.shots), cell(r.base), cell(r.new), cell(Stat(r.hm_of_means)),
                      number(r.base.seeds)])
        per_seed = r.hm_per_seed or Stat(None)
        rows.append([r.dataset, r.method, r.config, number(r.shots), number(r.base.seeds), number(r.base.mean),
                     number(r.base.std), number(r.new.mean), number(r.new.std), number(r.hm_of_means),
                     number(per_seed.mean), number(per_seed.std)])
    return ["dataset", "method", "shots", "Base", "New", "HM", "seeds"], shown, rows


def transfer_table(result: Transfer) -> tuple[list[str], list[list], list[list]]:
    shown, rows = [], []
    for r in result.rows:
        columns = [result.source, *result.targets]
        shown.append([r.method, number(r.shots), *(cell(r.cells.get(d)) for d in columns), cell(r.average, r.covers),
                      seed_span(list(r.cells.values()))])
        for d in columns:
            if d in r.cells:
                role = "source" if d == result.source else "target"
                stat = r.cells[d]
                rows.append([d, role, r.method, r.config, number(r.shots), number(stat.seeds), number(stat.mean),
                             number(stat.std)])
        if r.average is not None:
            a = r.average
            rows.append(["average", "average", r.method, r.config, number(r.shots), number(a.seeds), number(a.mean),
                         number(a.std)])
    headers = ["method", "shots", f"{result.source} (source)", *result.targets, "average", "seeds"]
    return headers, shown, rows


def fewshot_table(result: FewShot) -> tuple[list[str], list[list], list[list]]:
    shown, rows = [], []
    for r in result.rows:
        covers = r.covers or {}
        shown.append([r.dataset, r.method, *(cell(r.cells.get(k), covers.get(k)) for k in result.shots),
                      seed_span(list(r.cells.values()))])
        rows += [[r.dataset, r.method, r.config, k, number(s.seeds), number(s.mean), number(s.std)]
                 for k, s in r.cells.items()]
    return ["dataset", "method", *(f"{k}-shot" for k in result.shots), "seeds"], shown, rows


def notes(result: Result, reported: bool) -> list[str]:
    """The footnotes under a table: how each number was made, published rows, partial averages, missing runs."""
    lines = [STD_NOTE + "; seeds: the seeds found per cell" + ("." if isinstance(result, FewShot) else
                                                              "; shots: training shots per class.")]
    if isinstance(result, Base2New):
        lines.insert(0, "HM = 2·B·N/(B+N) of the mean Base and mean New, as the papers report it; the CSV also "
                        "has HM per seed (hm_per_seed_mean ± hm_per_seed_std). A seed counts when it has both "
                        "its train_base and its test_new run.")
        if len(result.datasets) > 1:
            lines.append("average: mean over datasets of the per-dataset means, HM of the averaged Base and New "
                         "(the CoCoOp/MaPLe/PromptSRC convention); its ± is over the seeds all its datasets share; "
                         "(k/n): over k of the n datasets in the table.")
    elif isinstance(result, Transfer):
        lines.append(f"average: over the targets ({result.source}, the source, excluded), mean of the per-target "
                     "means; (k/n): over k of the n targets.")
    elif len(result.datasets) > 1:
        lines.append("average: mean over datasets of the per-dataset means; (k/n): over k of the n datasets.")
    if not isinstance(result, FewShot) and any(r.published for r in result.rows):
        lines.append("(reported): published numbers from comparison/reported_results.csv, whose source column "
                     "cites each.")
    elif reported:
        lines.append("--reported: comparison/reported_results.csv has no published numbers for this table (its header "
                     "says which sources could be read).")
    lines += result.partial
    if result.missing:
        lines += ["Missing runs:", *(f"  {m}" for m in result.missing)]
    return lines


def render(result: Result, fmt: str) -> str:
    """The table in fmt (md, latex, plain or csv)."""
    if isinstance(result, Base2New):
        headers, shown, rows = base2new_table(result)
        columns = CSV_COLUMNS["base2new"]
    elif isinstance(result, Transfer):
        headers, shown, rows = transfer_table(result)
        columns = CSV_COLUMNS["transfer"]
    else:
        headers, shown, rows = fewshot_table(result)
        columns = CSV_COLUMNS["fewshot"]
    if fmt != "csv":
        return tabulate(shown, headers=headers, tablefmt=TABLE_FORMATS[fmt], disable_numparse=True)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue().rstrip("\n")

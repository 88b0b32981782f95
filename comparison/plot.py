"""--plot: the comparison as a figure. matplotlib is imported here only, when a plot is asked for.

The figure has a fixed size and no timestamp or software tag in its metadata, so the same
results give the same PNG bytes. No label is drawn among the data: methods are told apart by colour
and marker, named in one legend beside the axes, so that no two labels can overlap, whatever the
number of methods or how close their results are (tests/test_compare.py checks every text's box).
"""
from __future__ import annotations

from pathlib import Path

from comparison.base2new import AVERAGE, Base2New
from comparison.fewshot import FewShot
from comparison.stats import is_missing
from comparison.transfer import Transfer
from engine.errors import UserError

DPI = 100
METADATA = {".png": {"Software": None}, ".svg": {"Date": None, "Creator": None},
            ".pdf": {"Creator": None, "Producer": None, "CreationDate": None}}


def figure(width: float, columns: int = 1, ratios: tuple[int, ...] = (1,)):
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise UserError("--plot needs matplotlib: pip install matplotlib") from err
    fig = Figure(figsize=(width, 5), dpi=DPI, layout="constrained")
    return fig, fig.subplots(1, columns, gridspec_kw={"width_ratios": ratios}, squeeze=False)[0]


def color(i: int) -> str:
    """The i-th colour of matplotlib's default cycle, so a method keeps its colour across panels."""
    return f"C{i % 10}"


MARKERS = "osD^vPX*"


def marker(i: int) -> str:
    """A marker per block of 10 methods, so that colour and marker together tell 80 methods apart."""
    return MARKERS[(i // 10) % len(MARKERS)]


def legend_beside(ax, handles=None) -> None:
    """The methods' legend to the right of `ax`, outside its data (the layout makes room for it)."""
    ax.legend(handles=handles, fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def group_ticks(ax, groups: list[str]) -> None:
    """Group names under the bars: upright for a few groups, vertical (boxes side by side) for more."""
    ax.set_xticks(range(len(groups)), groups, rotation=0 if len(groups) <= 4 else 90)


def grouped_bars(ax, groups: list[str], series: dict[str, dict[str, float]], ylabel: str) -> None:
    """One group of bars per entry of groups, one bar per series that has a value there."""
    width = 0.8 / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        offset = (i - (len(series) - 1) / 2) * width
        xs = [g + offset for g, name in enumerate(groups) if name in values]
        ax.bar(xs, [values[name] for name in groups if name in values], width, label=label, color=color(i),
               hatch=None if i < 10 else "//")
    group_ticks(ax, groups)
    ax.set_ylabel(ylabel)


def plot_base2new(result: Base2New):
    groups = result.datasets + ([AVERAGE] if len(result.datasets) > 1 else [])
    series: dict[str, dict[str, float]] = {}
    for row in result.rows:
        if row.dataset in groups:
            if not is_missing(row.hm_of_means):
                series.setdefault(row.method, {})[row.dataset] = row.hm_of_means
    fig, (bars, scatter) = figure(14, 2, (3, 1))
    grouped_bars(bars, groups, series, "HM (%)")
    bars.set_title("Harmonic mean of Base and New per dataset")
    for row in (r for r in result.rows if r.dataset == groups[-1] and not is_missing(r.new.mean)):
        i = list(series).index(row.method) if row.method in series else len(series)
        scatter.scatter(row.base.mean, row.new.mean, color=color(i), marker=marker(i), label=row.method)
    legend_beside(scatter)
    scatter.margins(0.2)
    scatter.set_xlabel("Base (%)")
    scatter.set_ylabel("New (%)")
    scatter.set_title(f"Base vs New ({groups[-1]})")
    return fig


def plot_transfer(result: Transfer):
    groups = [result.source, *result.targets, AVERAGE]
    series = {row.method: row.cells | ({AVERAGE: row.average} if row.average is not None else {})
              for row in result.rows}
    fig, (ax,) = figure(max(8, 1.2 * len(groups)))
    grouped_bars(ax, groups, {m: {d: s.mean for d, s in cells.items()} for m, cells in series.items()}, "accuracy (%)")
    legend_beside(ax)
    ax.set_title(f"{result.protocol}: accuracy on the source and each target")
    return fig


def plot_fewshot(result: FewShot):
    shown = AVERAGE if len(result.datasets) > 1 else result.datasets[0]
    fig, (ax,) = figure(8)
    for i, row in enumerate(r for r in result.rows if r.dataset == shown):
        shots = sorted(k for k in row.cells if k > 0)  # 0 shots (zero-shot) has no place on a log axis
        if shots:
            ax.plot(shots, [row.cells[k].mean for k in shots], marker=marker(i), label=row.method, color=color(i))
        else:
            ax.axhline(row.cells[0].mean, linestyle="--", label=f"{row.method} (0 shots)", color=color(i))
    positive = [k for k in result.shots if k > 0]
    ax.set_xscale("log", base=2)
    ax.set_xticks(positive, [str(k) for k in positive])
    ax.set_xlabel("shots per class")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Few-shot accuracy ({shown})")
    legend_beside(ax)
    return fig


def save_plot(result: Base2New | Transfer | FewShot, path: Path) -> None:
    if isinstance(result, Base2New):
        fig = plot_base2new(result)
    elif isinstance(result, Transfer):
        fig = plot_transfer(result)
    else:
        fig = plot_fewshot(result)
    fig.savefig(path, metadata=METADATA.get(path.suffix.lower()))

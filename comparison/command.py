"""One comparison table from the output tree the scripts write (scripts/common.sh).

    python tools/compare.py output/ [--protocol base2new|xd|dg|fewshot] [--format md|csv|latex|plain]
                            [--methods NAME ...] [--datasets NAME ...] [--reported] [--plot out.png]

Protocols and the runs they read (<run> = <dataset>/shots_<K>/<trainer>/<cfg>/seed<S>/results.json):
  base2new  base2new/train_base/<run> (Base) and base2new/test_new/<run> (New): Base, New, HM per
            dataset and method, and the average over datasets.
  xd        cross_dataset/train/imagenet/<run> (the source; or cross_dataset/test/imagenet for a
            method without training, e.g. ZeroshotCLIP) and cross_dataset/test/<run> (the targets:
            every dataset but imagenet and the four below), with the average over the targets.
  dg        the same tree; targets imagenetv2, imagenet_sketch, imagenet_a, imagenet_r.
  fewshot   few_shot/<run>: one column per shot count, and the average over datasets.

Each number is the mean ± std over seeds (ddof 0). A method is its trainer's name, or
`Trainer (cfg)` when the tree has several configs of that trainer. Footnotes under the table say
how HM and the averages are made and list partial averages and missing runs; with --format csv
they go to stderr, so stdout is the CSV alone. Its columns (one number per cell, empty if none):
  base2new  dataset,method,config,shots,seeds,base_mean,base_std,new_mean,new_std,hm_of_means,
            hm_per_seed_mean,hm_per_seed_std   (dataset "average" for the average rows)
  xd, dg    dataset,role,method,config,shots,seeds,acc_mean,acc_std   (role: source, target or average;
            the average row has dataset "average")
  fewshot   dataset,method,config,shots,seeds,acc_mean,acc_std   (dataset "average" likewise)
--reported adds published numbers from comparison/reported_results.csv as "Method (reported)" rows.
--report R.md writes a markdown report instead: a title, the command that regenerates it
(--regenerate, default this command line), the table, its notes and the plot (R.png, embedded).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from comparison.base2new import Base2New, base2new
from comparison.fewshot import FewShot, few_shot
from comparison.format import TABLE_FORMATS, notes, render
from comparison.plot import save_plot  # matplotlib is imported only when a plot is drawn
from comparison.reported import REPORTED_FILE, load_reported
from comparison.transfer import Transfer, transfer
from comparison.tree import Selection
from engine.io import atomic_write_text

PROTOCOLS = ("base2new", "xd", "dg", "fewshot")


def compare(root: Path, protocol: str, selection: Selection, reported: bool) -> Base2New | Transfer | FewShot:
    if protocol == "fewshot":
        return few_shot(root, selection)
    published = load_reported(protocol) if reported else []
    if protocol == "base2new":
        return base2new(root, selection, published)
    return transfer(root, protocol, selection, published)


def footnote(line: str, fmt: str) -> str:
    """A note under the table: a LaTeX comment, a markdown list item (indented: nested), or plain text."""
    if fmt == "latex":
        return f"% {line}"
    if fmt == "md":
        return f"  - {line.strip()}" if line.startswith("  ") else f"- {line}"
    return line


def write_report(path: Path, result: Base2New | Transfer | FewShot, lines: list[str], title: str,
                 regenerate: str) -> None:
    """The markdown report and its plot (same name, .png), so a results page is made by the tool alone."""
    plot = path.with_suffix(".png")
    save_plot(result, plot)
    body = [f"# {title}", "", f"Regenerate with `{regenerate}`.", "", render(result, "md"), "",
            *(footnote(line, "md") for line in lines), "", f"![{title}]({plot.name})", ""]
    atomic_write_text(path, "\n".join(body))
    print(f"report: {path} (plot: {plot})", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", type=Path, help="the output folder (holding base2new/, cross_dataset/, few_shot/)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="base2new")
    p.add_argument("--format", choices=[*TABLE_FORMATS, "csv"], default="plain")
    p.add_argument("--methods", nargs="+", default=(), help="trainer names or trainer/cfg (default: all)")
    p.add_argument("--datasets", nargs="+", default=(), help="dataset folder names (default: all)")
    p.add_argument("--reported", action="store_true", help=f"add the published numbers of {REPORTED_FILE.name}")
    p.add_argument("--plot", type=Path, help="also draw the comparison to this image file (needs matplotlib)")
    p.add_argument("--report", type=Path, help="write a markdown report (table, notes, plot) to this .md file")
    p.add_argument("--title", default="Comparison", help="the report's title")
    p.add_argument("--regenerate", help="the command the report names to regenerate it (default: this one)")
    args = p.parse_args(argv)
    result = compare(args.root, args.protocol, Selection(tuple(args.methods), tuple(args.datasets)), args.reported)
    lines = notes(result, args.reported)
    if args.report:
        words = sys.argv[1:] if argv is None else argv
        command = args.regenerate or shlex.join(["python", "tools/compare.py", *words])
        write_report(args.report, result, lines, args.title, command)
        return
    print(render(result, args.format))
    if args.format == "csv":
        print("\n".join(lines), file=sys.stderr)
    else:
        print("\n" + "\n".join(footnote(line, args.format) for line in lines))
    if args.plot:
        save_plot(result, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr)

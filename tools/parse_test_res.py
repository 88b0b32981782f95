"""Mean and spread of a metric over the seed folders of an experiment, as CoOp's parse_test_res.py.

    python tools/parse_test_res.py output/base2new/test_new/dtd/shots_16/CoOp/vit_b16_ep50_ctxv1 [--test-log]
    python tools/parse_test_res.py DIR --ci95            # 95% confidence interval instead of the std
    python tools/parse_test_res.py DIR --multi-exp       # DIR/<experiment>/<seed>/: the average of the means

Each folder under DIR is one seed. Its value is read from results.json when there is one: the exact
metric of the run's final evaluation (TEST.SPLIT), written only once the run finished. Without
results.json (e.g. a tree from CoOp's own code), or with --from-log, it is read as CoOp does: the
last `* <keyword>: X%` line after the end marker, "Finish training" or "Finished training" (a
training log), or "=> result" with --test-log (an evaluation-only log). The logs of a resumed run
(log.txt, then train.py's log.txt-<time>) are read in order and the last value wins. log.txt
rounds to one decimal, so the two sources agree to 0.05.

As CoOp: std is the population std (numpy.std) and --ci95 prints 1.96 * std / sqrt(n).
"""
from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cli import run_cli  # noqa: E402
from engine.errors import DataError  # noqa: E402
from engine.run_identity import read_results  # noqa: E402

TRAIN_MARKERS = ("Finish training", "Finished training")
TEST_MARKERS = ("=> result",)


def ci95(values: list[float]) -> float:
    return 1.96 * statistics.pstdev(values) / math.sqrt(len(values))


def from_results_json(path: Path, keyword: str) -> float:
    results = read_results(path)
    split = results["manifest"]["config"].get("TEST", {}).get("SPLIT", "test")
    metrics = results["evaluations"].get(split, {}).get("metrics", {})
    if keyword not in metrics:
        raise DataError(f"{path}: its {split!r} evaluation has no {keyword!r}; it has {sorted(metrics) or 'none'} "
                         "(pick one with --keyword, or use --from-log)")
    return metrics[keyword]


def from_logs(run_dir: Path, keyword: str, markers: tuple[str, ...]) -> float | None:
    """CoOp's rule per log file: after a marker line, each `* keyword: X%` replaces the value."""
    pattern = re.compile(rf"\* {re.escape(keyword)}: ([\.\deE+-]+)%")
    value = None
    first = [run_dir / "log.txt"] if (run_dir / "log.txt").is_file() else []
    for log in first + sorted(run_dir.glob("log.txt-*")):
        after_marker = False
        for line in log.read_text().splitlines():
            line = line.strip()
            after_marker = after_marker or line in markers
            match = pattern.search(line)
            if match and after_marker:
                value = float(match.group(1))
    return value


def seed_dirs(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise DataError(f"{directory} is not a folder")
    return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))


def parse_directory(directory: Path, keyword: str, markers: tuple[str, ...], from_log: bool,
                    use_ci95: bool) -> float:
    """Print every seed's value, then mean +- std (or ci95); return the mean."""
    print("===")
    print(f"Parsing files in {directory}")
    values = []
    for run in seed_dirs(directory):
        results = run / "results.json"
        if results.is_file() and not from_log:
            source, value = results, from_results_json(results, keyword)
        elif (run / "log.txt").is_file() or any(run.glob("log.txt-*")):
            source, value = run / "log.txt", from_logs(run, keyword, markers)
        else:
            raise DataError(f"{run} has neither results.json nor log.txt; is {directory} the folder of the seeds?")
        if value is None:
            print(f"skipped: {source} (no '* {keyword}: X%' after {' / '.join(markers)}: unfinished?)")
            continue
        print(f"file: {source}. {keyword}: {value:.2f}%. ")
        values.append(value)
    if not values:
        hint = "" if markers == TEST_MARKERS else "; for evaluation-only runs add --test-log"
        raise DataError(f"Nothing found in {directory}: no results.json and no '* {keyword}: X%' after "
                         f"{' / '.join(markers)} in any seed folder's log{hint}")
    mean = statistics.fmean(values)
    spread = ci95(values) if use_ci95 else statistics.pstdev(values)
    print(f"Summary of directory: {directory}")
    print(f"* {keyword}: {mean:.2f}% +- {spread:.2f}%")
    print("===")
    return mean


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", type=Path, help="the folder holding one folder per seed")
    p.add_argument("--ci95", action="store_true", help="95%% confidence interval instead of the std")
    p.add_argument("--test-log", action="store_true", help="evaluation-only logs: the marker is '=> result'")
    p.add_argument("--multi-exp", action="store_true", help="DIR holds several experiments, each with seed folders")
    p.add_argument("--keyword", default="accuracy", help="the metric (a `* KEYWORD: X%%` log line / results.json key)")
    p.add_argument("--from-log", action="store_true", help="read the logs even where results.json exists")
    args = p.parse_args(argv)
    markers = TEST_MARKERS if args.test_log else TRAIN_MARKERS
    experiments = seed_dirs(args.directory) if args.multi_exp else [args.directory]
    means = {str(d): parse_directory(d, args.keyword, markers, args.from_log, args.ci95) for d in experiments}
    if args.multi_exp:
        print("Average performance")
        print(f"* {args.keyword}: {statistics.fmean(means.values()):.2f}%")
    return means


if __name__ == "__main__":
    run_cli(main)

"""Published numbers (comparison/reported_results.csv) for the `--reported` rows of tools/compare.py."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import NamedTuple

from engine.errors import DataError

REPORTED_FILE = Path(__file__).with_name("reported_results.csv")
PROTOCOLS = ("base2new", "xd", "dg")  # few-shot rows would need a shots column; none were readable
COLUMNS = ["protocol", "dataset", "method", "config", "base", "new", "hm", "acc", "source"]


class Reported(NamedTuple):
    protocol: str
    dataset: str
    method: str
    config: str
    base: float | None
    new: float | None
    hm: float | None
    acc: float | None
    source: str


def load_reported(protocol: str, path: Path = REPORTED_FILE) -> list[Reported]:
    """The rows of one protocol; lines starting with # are the file's notes."""
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    reader = csv.DictReader(lines)
    if reader.fieldnames != COLUMNS:
        raise DataError(f"{path}: the header must be {','.join(COLUMNS)}, not {','.join(reader.fieldnames or [])}")
    rows = []
    for number, row in enumerate(reader, start=1):
        if row["protocol"] not in PROTOCOLS or not row["source"]:
            raise DataError(f"{path}: data row {number} needs a protocol among {', '.join(PROTOCOLS)} and a source")
        try:
            values = {k: float(row[k]) if row[k] else None for k in ("base", "new", "hm", "acc")}
        except ValueError as err:
            raise DataError(f"{path}: data row {number}: {err}") from err
        if row["protocol"] == protocol:
            rows.append(Reported(row["protocol"], row["dataset"], row["method"], row["config"], source=row["source"],
                                 **values))
    return rows


def reported_labels(rows: list[Reported]) -> dict[Reported, str]:
    """`Method (reported)`, or `Method (config, reported)` where the file has several configs of it."""
    configs: dict[str, set[str]] = {}
    for row in rows:
        configs.setdefault(row.method, set()).add(row.config)
    return {row: f"{row.method} ({row.config}, reported)" if len(configs[row.method]) > 1
            else f"{row.method} (reported)" for row in rows}

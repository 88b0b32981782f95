"""Mean ± std over seeds, the harmonic mean, and averages over datasets, as the papers compute them.

The std is numpy's default (ddof 0), the one CoOp's `parse_test_res.py` prints, so a figure
here matches what a CoOp-family repository reports for the same runs.
"""
from __future__ import annotations

import math
import statistics
from typing import Iterable, NamedTuple

NAN = float("nan")


class Stat(NamedTuple):
    """A mean with its spread over seeds; std and seeds are None for a published number."""

    mean: float
    std: float | None = None
    seeds: int | None = None


def summarise(values: Iterable[float]) -> Stat:
    values = list(values)
    if not values:
        return Stat(NAN, NAN, 0)
    return Stat(statistics.fmean(values), statistics.pstdev(values), len(values))


def seed_averages(per_dataset: list[dict[int, float]]) -> dict[int, float]:
    """{seed: mean over the datasets} for the seeds that every dataset has."""
    common = set.intersection(*(set(d) for d in per_dataset)) if per_dataset else set()
    return {s: statistics.fmean(d[s] for d in per_dataset) for s in sorted(common)}


def across_datasets(per_dataset: list[dict[int, float]]) -> Stat:
    """The papers' average row: the mean over datasets of each dataset's seed mean.

    Its std is the spread over seeds of the per-seed average, on the seeds all the datasets
    share (seeds counts those); with no shared seed the std is NaN.
    """
    mean = statistics.fmean(statistics.fmean(d.values()) for d in per_dataset)
    by_seed = seed_averages(per_dataset)
    std = statistics.pstdev(by_seed.values()) if by_seed else NAN
    return Stat(mean, std, len(by_seed))


def is_missing(value: float | None) -> bool:
    return value is None or math.isnan(value)

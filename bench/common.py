"""Helpers shared by the benchmark scripts."""
from __future__ import annotations

import random
import statistics
import time
from typing import Callable

WORDS = ["amber", "crested", "lesser", "spotted", "marsh", "glider", "kettle", "lantern", "thistle",
         "harrier", "copper", "dune", "falcon", "velvet", "moss", "ridge", "plover", "orchid"]


def classnames(n: int, seed: int = 0) -> list[str]:
    """Made-up class names of 1-3 words."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(WORDS, rng.randint(1, 3))) for _ in range(n)]


def median_time(fn: Callable[[], object], repeats: int, warmup: bool = True) -> float:
    """Median wall time of `fn` over `repeats` calls (after one warm-up call)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)

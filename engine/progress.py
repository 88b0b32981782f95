"""Progress of the long loops (training epochs, evaluations, the head analysis), in the log.

A `Progress` counts a loop's steps and prints a line with the count, the elapsed time and an ETA
whenever `interval` seconds (default 30, `$PROMPTLAB_PROGRESS_SECONDS`) have passed without one.
The line goes to stdout, which train.py copies to log.txt, so a run writing to a file or under
SLURM shows that it is alive and when it will end, as a terminal does. A background timer prints
it, so one step longer than the interval (a 100-image evaluation batch of ViT-B/16 on a CPU) still
shows; the loop itself may print its own, richer lines and say so (`printed`), which resets the clock.
"""
from __future__ import annotations

import datetime
import os
import sys
import threading
import time
from typing import Callable, Iterable, Iterator, TypeVar

INTERVAL_ENV = "PROMPTLAB_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0
T = TypeVar("T")


def default_interval() -> float:
    try:
        return float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL


def duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=max(int(round(seconds)), 0)))


class Progress:
    """`total` steps of `unit`, of which `after` more follow this loop at the same pace (later
    epochs), so that the ETA is that of the whole job. Use as a context manager around the loop."""

    def __init__(self, desc: str, total: int | None, unit: str = "batch", after: int = 0,
                 interval: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.desc, self.total, self.unit, self.after = desc, total, unit, after
        self.interval = default_interval() if interval is None else interval
        self.clock = clock
        self.done = 0
        self.started = self.last_line = clock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    # ---- the loop's side ----------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        with self._lock:
            self.done += n

    def due(self) -> bool:
        """Whether `interval` seconds have passed since the last line (for a loop's own lines)."""
        return self.clock() - self.last_line >= self.interval

    def printed(self) -> None:
        """The loop printed a progress line of its own: the next timer line is `interval` away."""
        self.last_line = self.clock()

    def eta(self) -> float | None:
        """Seconds left at the pace so far; None before the first step."""
        with self._lock:
            done = self.done
        if done == 0 or self.total is None:
            return None
        return (self.clock() - self.started) / done * (self.total - done + self.after)

    def line(self) -> str:
        elapsed = self.clock() - self.started
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        eta = self.eta()
        when = f"eta {duration(eta)}" if eta is not None else f"eta unknown until the first {self.unit} ends"
        return f"{self.desc}: {count} {plural(self.unit)} done, {duration(elapsed)} elapsed, {when}"

    def emit(self) -> None:
        sys.stdout.write(self.line() + "\n")  # one write: a line from the timer never splits another
        sys.stdout.flush()
        self.printed()

    # ---- the timer -------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.wait(max(self.interval - (self.clock() - self.last_line), 0.05)):
            if self.due():
                self.emit()

    def __enter__(self) -> "Progress":
        self.started = self.last_line = self.clock()
        if self.interval > 0:
            self._timer = threading.Thread(target=self._run, name=f"progress: {self.desc}", daemon=True)
            self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join()


def plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("s", "ch", "sh", "x")) else "s")


def progress(items: Iterable[T], desc: str, total: int | None = None, unit: str = "batch", after: int = 0,
             interval: float | None = None) -> Iterator[T]:
    """`items`, with a progress line at least every `interval` seconds while they are consumed and
    one at the end (count and time taken) when the loop took longer than the interval."""
    if total is None:
        total = len(items) if hasattr(items, "__len__") else None  # type: ignore[arg-type]
    with Progress(desc, total, unit, after, interval) as p:
        for item in items:
            yield item
            p.step()
        took = p.clock() - p.started
        if p.interval > 0 and took >= p.interval:
            sys.stdout.write(f"{desc}: {p.done} {plural(unit)} in {duration(took)}\n")

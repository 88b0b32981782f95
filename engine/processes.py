"""Process trees: finding a process's descendants and stopping them (the sweep's launchers, the
warm worker and its client). Standard library only, so the light processes can import it."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterable


def process_tree(pid: int) -> list[int]:
    """pid and its descendants, from /proc (just pid where there is no /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += children.get(p, [])
    return tree


def signal_tree(pid: int, sig: int = signal.SIGTERM) -> None:
    for p in process_tree(pid):
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def alive(pid: int) -> bool:
    """Whether a process runs (an exited child that nobody has reaped yet does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_tree(pid: int, grace_s: float) -> None:
    """SIGTERM to a step and its children; SIGKILL to those still running after `grace_s` seconds.
    Safe in a signal handler: it never waits on the step's Popen, whose wait() it may have interrupted."""
    stop_trees([pid], grace_s)


def stop_trees(pids: Iterable[int], grace_s: float) -> None:
    """stop_tree for several steps at once: one grace period for all of them."""
    tree = [p for pid in pids for p in process_tree(pid)]
    for p in tree:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.time() + grace_s
    while time.time() < deadline and any(alive(p) for p in tree):
        time.sleep(0.1)
    for p in tree:
        if alive(p):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass

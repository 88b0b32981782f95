"""One writer per output folder, and only the run the folder belongs to.

`RunFolder.claim()` takes an OS lock on `OUT/.lock` for the run's lifetime (a second run
into the same folder stops at once, naming the holder), removes the temp files of saves
that a kill interrupted, and `check()` compares the run's manifest with what the folder
already holds (results.json and the newest checkpoints). `start_over()` moves a folder's
earlier run aside, into a hidden sibling folder, instead of deleting anything.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from engine.checkpoint import CheckpointError, epoch_checkpoints, latest_checkpoint, load_checkpoint, model_folders
from engine.errors import RunLockedError, RunMismatchError
from engine.io import remove_interrupted_saves
from engine.locks import FileLock
from engine.run_identity import differences, mismatch_message

LOCK = ".lock"
RESULTS = "results.json"
START_OVER_FLAG = "--start-over"


def newest_checkpoint(folder: Path) -> Path | None:
    """The newest readable epoch checkpoint of a model folder (damaged ones are skipped: resume
    falls back past them too)."""
    candidates = [latest_checkpoint(folder)] + [p for _, p in sorted(epoch_checkpoints(folder).items(), reverse=True)]
    for path in candidates:
        if path is None:
            continue
        try:
            load_checkpoint(path)
            return path
        except CheckpointError:
            continue
    return None


def checkpoint_manifest(ckpt: dict):
    """The manifest a checkpoint records ({} for one written before manifests, which then matches
    no run: run_identity.manifest_problems)."""
    meta = ckpt.get("meta")
    return meta.get("manifest", {}) if isinstance(meta, dict) else {}


def checkpoint_manifests(directory: Path) -> list[tuple[str, object]]:
    """(file, manifest) of the newest checkpoint of each model folder under `directory`."""
    out = []
    for folder in model_folders(directory):
        path = newest_checkpoint(folder)
        if path is not None:
            out.append((str(path), checkpoint_manifest(load_checkpoint(path))))
    return out


def results_manifest(path: Path):
    """The manifest a results.json records ({} if it has none: written before manifests, or
    damaged; it then matches no run); None for a file that is not valid JSON (it is moved aside
    when the run writes its own)."""
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return results.get("manifest", {}) if isinstance(results, dict) else {}


class RunFolder:
    """An output folder claimed by this process."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock = FileLock(self.path / LOCK)
        self.notes: list[str] = []  # printed once the run's log is open

    def claim(self) -> "RunFolder":
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.lock.acquire(blocking=False):
            holder = self.lock.holder()
            who = holder.describe() if holder else "another process"
            raise RunLockedError(
                f"Another run is writing to {self.path}: {who}.\n"
                "Wait for it to finish (or stop it), or give this run another --output-dir."
            )
        if self.lock.stale is not None:
            self.notes.append(f"{self.path / LOCK} was left by {self.lock.stale.describe()}, which is no longer "
                              "running (a killed run); its lock is taken over")
        removed = remove_interrupted_saves(self.path)
        if removed:
            self.notes.append(f"Removed {len(removed)} temp file(s) of interrupted saves: "
                              + ", ".join(str(p.relative_to(self.path)) for p in removed))
        return self

    def release(self) -> None:
        self.lock.release()

    def __enter__(self) -> "RunFolder":
        return self.claim()

    def __exit__(self, *exc) -> None:
        self.release()

    # ---- identity --------------------------------------------------------------------------
    def recorded(self, include_checkpoints: bool = True) -> list[tuple[str, dict]]:
        found = []
        results = self.path / RESULTS
        if results.is_file():
            manifest = results_manifest(results)
            if manifest is not None:
                found.append((str(results), manifest))
        if include_checkpoints:
            found += checkpoint_manifests(self.path)
        return found

    def mismatches(self, manifest: dict) -> list[tuple[str, list[str]]]:
        return [(source, diffs) for source, recorded in self.recorded()
                if (diffs := differences(recorded, manifest))]

    def check(self, manifest: dict, start_over: bool = False) -> None:
        """Refuse a folder that holds another run (or, with start_over, move that run aside)."""
        found = self.mismatches(manifest)
        if not found:
            return
        if start_over:
            moved = self.start_over()
            self.notes.append(f"{START_OVER_FLAG}: the earlier run in {self.path} was moved to {moved}")
            return
        source, diffs = found[0]
        raise RunMismatchError(mismatch_message(f"{self.path} holds {source}, which", diffs, self.path,
                                                START_OVER_FLAG))

    def finished(self, manifest: dict) -> bool:
        """Whether the folder holds a finished run (results.json) with this manifest."""
        results = self.path / RESULTS
        if not results.is_file():
            return False
        recorded = results_manifest(results)
        return recorded is not None and not differences(recorded, manifest)

    def start_over(self) -> Path:
        """Move everything but the lock into `.<name>.moved-<time>` beside the folder."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f".{self.path.name}.moved-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f".{self.path.name}.moved-{stamp}.{n}")
            n += 1
        target.mkdir()
        for entry in sorted(self.path.iterdir()):
            if entry.name != LOCK:
                entry.rename(target / entry.name)
        return target


def check_resume_source(directory: str | Path, manifest: dict) -> None:
    """--resume DIR: its checkpoints must belong to this run."""
    for source, recorded in checkpoint_manifests(Path(directory)):
        diffs = differences(recorded, manifest)
        if diffs:
            raise RunMismatchError(mismatch_message(f"--resume {directory}: {source}", diffs, None, START_OVER_FLAG))

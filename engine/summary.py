"""The one line a run ends with: its test accuracy and, for the new-class half of a base-to-new
pair, the pair's Base / New / HM, the Base read from the training run's results.json."""
from __future__ import annotations

import json
from pathlib import Path


def harmonic_mean(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b else 0.0


def trained_base_accuracy(model_dir: str | Path | None, dataset: str) -> tuple[float, Path] | None:
    """(test accuracy, file) of the training run in `model_dir` when it evaluated the base classes
    of `dataset` (a finished train_base run), else None."""
    if not model_dir:
        return None
    path = Path(model_dir) / "results.json"
    try:
        results = json.loads(path.read_text())
        if results.get("subsample") != "base" or results.get("dataset") != dataset:
            return None
        return float(results["evaluations"]["test"]["metrics"]["accuracy"]), path
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recorded_evaluations(output_dir: str | Path) -> dict:
    """The evaluations a finished run's results.json records ({} if unreadable)."""
    try:
        evaluations = json.loads((Path(output_dir) / "results.json").read_text()).get("evaluations")
    except (OSError, ValueError, AttributeError):
        return {}
    return evaluations if isinstance(evaluations, dict) else {}


def result_line(cfg, evaluations: dict, model_dir: str | Path | None = None) -> str | None:
    """`Result: ...` for the run's test evaluation (None if it had none)."""
    try:
        accuracy = float(evaluations["test"]["metrics"]["accuracy"])
    except (KeyError, TypeError, ValueError):
        return None
    d = cfg.DATASET
    classes = {"all": "all classes", "base": "base classes", "new": "new classes"}.get(d.SUBSAMPLE_CLASSES,
                                                                                     d.SUBSAMPLE_CLASSES)
    line = f"Result: {d.NAME} ({classes}), seed {cfg.SEED}: accuracy {accuracy:.2f}%"
    base = trained_base_accuracy(model_dir, d.NAME) if d.SUBSAMPLE_CLASSES == "new" else None
    if base is not None:
        line += (f"; base-to-new: Base {base[0]:.2f} / New {accuracy:.2f} / HM {harmonic_mean(base[0], accuracy):.2f} "
                 f"(Base from {base[1]})")
    return line

"""The one line a run ends with: its test accuracy and, for the new-class half of a base-to-new
pair, the pair's Base / New / HM, the Base read from the training run's results.json."""
from __future__ import annotations

from pathlib import Path

from engine.errors import UserError
from engine.run_folder import RESULTS
from engine.run_identity import read_results


def harmonic_mean(base: float, new: float) -> float:
    """HM = 2·B·N/(B+N), the base-to-new summary of CoCoOp and its successors."""
    return 2 * base * new / (base + new) if base + new else 0.0


def trained_base_accuracy(model_dir: str | Path | None, dataset: str) -> tuple[float, Path] | None:
    """(test accuracy, file) of the training run in `model_dir` when its manifest says it evaluated
    the base classes of `dataset` (a finished train_base run), else None."""
    if not model_dir:
        return None
    path = Path(model_dir) / RESULTS
    try:
        results = read_results(path)
        manifest = results["manifest"]
        if manifest["subsample"] != "base" or manifest["dataset"] != dataset:
            return None
        return float(results["evaluations"]["test"]["metrics"]["accuracy"]), path
    except (UserError, OSError, KeyError, TypeError, ValueError):
        return None


def recorded_evaluations(output_dir: str | Path) -> dict:
    """The evaluations a finished run's results.json records ({} if unreadable)."""
    try:
        return read_results(Path(output_dir) / RESULTS)["evaluations"]
    except (UserError, OSError):
        return {}


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

"""Dassl's Classification evaluator: same metrics and the same `=> result` lines."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch

from engine import distributed
from engine.errors import DataError
from engine.registry import EVALUATOR_REGISTRY


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean F1 over the labels present in y_true (sklearn's average="macro", labels=unique(y_true))."""
    scores = []
    for c in np.unique(y_true):
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * p * r / (p + r) if p + r else 0.0)
    return float(np.mean(scores)) if scores else 0.0


@EVALUATOR_REGISTRY.register()
class Classification:
    def __init__(self, cfg, lab2cname: dict[int, str] | None = None):
        self.cfg = cfg
        self.lab2cname = lab2cname or {}
        self.reset()

    def reset(self) -> None:
        self._y_true: list[np.ndarray] = []
        self._y_pred: list[np.ndarray] = []

    def process(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self._y_pred.append(logits.argmax(dim=1).cpu().numpy())
        self._y_true.append(labels.cpu().numpy())

    def gather(self) -> None:
        """Every rank's labels and predictions (torchrun), so that each computes the full result."""
        self._y_true = distributed.gather_arrays(self._y_true)
        self._y_pred = distributed.gather_arrays(self._y_pred)

    def evaluate(self) -> OrderedDict:
        y_true = np.concatenate(self._y_true) if self._y_true else np.zeros(0, dtype=int)
        y_pred = np.concatenate(self._y_pred) if self._y_pred else np.zeros(0, dtype=int)
        total = len(y_true)
        if total == 0:
            raise DataError("Evaluation saw no samples: the evaluated split is empty (check the split file and DATASET.SUBSAMPLE_CLASSES)")
        correct = int(np.sum(y_true == y_pred))
        acc = 100.0 * correct / total
        f1 = 100.0 * macro_f1(y_true, y_pred)
        results = OrderedDict(accuracy=acc, error=100.0 - acc, macro_f1=f1)
        print(
            "=> result\n"
            f"* total: {total:,}\n"
            f"* correct: {correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {100.0 - acc:.1f}%\n"
            f"* macro_f1: {f1:.1f}%"
        )
        if self.cfg.TEST.PER_CLASS_RESULT:
            results["perclass_accuracy"] = self._per_class(y_true, y_pred)
        return results

    def _per_class(self, y_true: np.ndarray, y_pred: np.ndarray) -> float:
        print("=> per-class result")
        accs = []
        for label in np.unique(y_true):
            mask = y_true == label
            total, correct = int(mask.sum()), int(np.sum(y_pred[mask] == label))
            acc = 100.0 * correct / total
            accs.append(acc)
            name = self.lab2cname.get(int(label), "")
            print(f"* class: {label} ({name})\ttotal: {total:,}\tcorrect: {correct:,}\tacc: {acc:.1f}%")
        mean = float(np.mean(accs))
        print(f"* average: {mean:.1f}%")
        return mean


def build_evaluator(cfg, **kwargs):
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)

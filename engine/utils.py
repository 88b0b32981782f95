"""Seeding and running-average meters (Dassl's AverageMeter / MetricMeter)."""
from __future__ import annotations

import random
from collections import defaultdict

import numpy as np
import torch


def set_random_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def rng_state() -> dict:
    """Every RNG a training step touches, so a resumed run continues the same streams.

    Only tensors and plain Python types, so that checkpoints load with weights_only=True.
    """
    kind, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        n = numpy_state
        numpy_state = (n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    np.random.set_state(numpy_state)  # a tuple with an array in checkpoints of earlier versions
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class AverageMeter:
    def __init__(self):
        self.val = self.avg = self.sum = 0.0
        self.count = 0

    def update(self, val: float, n: int = 1) -> None:
        self.val = float(val)
        self.sum += self.val * n
        self.count += n
        self.avg = self.sum / self.count


class MetricMeter:
    """Named AverageMeters printed as Dassl does: `loss 1.2345 (1.4567)`."""

    def __init__(self, delimiter: str = " "):
        self.meters: dict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, values: dict) -> None:
        for k, v in values.items():
            self.meters[k].update(v.item() if isinstance(v, torch.Tensor) else v)

    def __str__(self) -> str:
        return self.delimiter.join(f"{k} {m.val:.4f} ({m.avg:.4f})" for k, m in self.meters.items())

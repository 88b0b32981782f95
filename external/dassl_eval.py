"""`dassl.metrics` and `dassl.evaluation`: compute_accuracy (a list, one tensor per top-k, as
Dassl returns it) and the evaluator registry, whose Classification is promptlab's own."""
from __future__ import annotations

from typing import Sequence

import torch

from engine.evaluator import Classification
from engine.registry import EVALUATOR_REGISTRY as ENGINE_EVALUATORS
from external.dassl_utils import Registry

EVALUATOR_REGISTRY = Registry("EVALUATOR", ENGINE_EVALUATORS)

__all__ = ["EVALUATOR_REGISTRY", "Classification", "EvaluatorBase", "build_evaluator", "compute_accuracy"]


def compute_accuracy(output: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor,
                     topk: tuple[int, ...] = (1,)) -> list[torch.Tensor]:
    """Top-k accuracy in percent for each k: a list of 1-element tensors (`[0].item()`)."""
    if isinstance(output, (tuple, list)):
        output = output[0]
    _, pred = output.topk(max(topk), dim=1, largest=True, sorted=True)
    correct = pred.t().eq(target.view(1, -1).expand(pred.shape[1], -1))
    return [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / target.size(0)) for k in topk]


class EvaluatorBase:
    """The interface of Dassl's evaluators, for evaluators that trainer files define."""

    def __init__(self, cfg, **kwargs):
        self.cfg = cfg

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, mo, gt) -> None:
        raise NotImplementedError

    def evaluate(self):
        raise NotImplementedError


def build_evaluator(cfg, **kwargs):
    if cfg.VERBOSE:
        print(f"Loading evaluator: {cfg.TEST.EVALUATOR}")
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)

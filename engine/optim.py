"""Optimizers and Dassl's epoch-wise LR schedules, without Dassl's broken `verbose` argument.

Dassl chains a warmup scheduler in front of its successor. With WARMUP_RECOUNT (the
default) the successor starts counting once warmup ends, so for CoOp's config (one
constant warmup epoch) the LR of epoch e is WARMUP_CONS_LR for e = 0 and
cosine(e - 1) over MAX_EPOCH afterwards. `DasslLR` computes that trace in closed form.
"""
from __future__ import annotations

import bisect
import math
from typing import Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from engine.errors import ConfigError
from engine.registry import did_you_mean

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("cosine", "single_step", "multi_step")


def build_optimizer(params: nn.Module | Iterable, optim_cfg) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW over a module's trainable parameters or explicit param groups."""
    if isinstance(params, nn.Module):
        params = [p for p in params.parameters() if p.requires_grad]
    params = list(params)
    if not params:
        raise ConfigError("build_optimizer got no trainable parameters: the config leaves nothing to learn")
    name, lr, wd = optim_cfg.NAME, optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
            dampening=optim_cfg.SGD_DAMPNING, nesterov=optim_cfg.SGD_NESTEROV,
        )
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=betas)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=betas)
    raise ConfigError(f"OPTIM.NAME: unknown optimizer {name!r}.{did_you_mean(name, OPTIMIZERS)} Supported: {OPTIMIZERS}")


class DasslLR(LRScheduler):
    """Epoch-indexed LR with Dassl's warmup chaining, stepped once per epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, optim_cfg, last_epoch: int = -1):
        c = optim_cfg
        if c.LR_SCHEDULER not in SCHEDULERS:
            raise ConfigError(
                f"OPTIM.LR_SCHEDULER: unknown scheduler {c.LR_SCHEDULER!r}."
                f"{did_you_mean(c.LR_SCHEDULER, SCHEDULERS)} Supported: {SCHEDULERS}"
            )
        if c.WARMUP_EPOCH > 0 and c.WARMUP_TYPE not in ("constant", "linear"):
            raise ConfigError(f"OPTIM.WARMUP_TYPE must be 'constant' or 'linear', got {c.WARMUP_TYPE!r}")
        stepsize = list(c.STEPSIZE) if isinstance(c.STEPSIZE, (list, tuple)) else [c.STEPSIZE]
        if c.LR_SCHEDULER in ("single_step", "multi_step") and stepsize[-1] <= 0:
            raise ConfigError(f"OPTIM.STEPSIZE must be positive for {c.LR_SCHEDULER}, got {c.STEPSIZE}")
        self.kind = c.LR_SCHEDULER
        self.max_epoch = c.MAX_EPOCH
        self.stepsize = stepsize
        self.gamma = c.GAMMA
        self.warmup_epoch = max(c.WARMUP_EPOCH, 0)
        self.warmup_type = c.WARMUP_TYPE
        self.warmup_cons_lr = c.WARMUP_CONS_LR
        self.warmup_min_lr = c.WARMUP_MIN_LR
        self.warmup_recount = c.WARMUP_RECOUNT
        super().__init__(optimizer, last_epoch)

    def _successor_lr(self, base_lr: float, t: int) -> float:
        if self.kind == "cosine":
            return 0.5 * base_lr * (1 + math.cos(math.pi * t / self.max_epoch))
        if self.kind == "single_step":
            return base_lr * self.gamma ** (t // self.stepsize[-1])
        return base_lr * self.gamma ** bisect.bisect_right(self.stepsize, t)

    def lr_at(self, base_lr: float, epoch: int) -> float:
        w = self.warmup_epoch
        if epoch < w:
            if self.warmup_type == "constant":
                return self.warmup_cons_lr
            return self.warmup_min_lr if epoch == 0 else base_lr * epoch / w
        if epoch == w:
            return base_lr
        return self._successor_lr(base_lr, epoch - w if self.warmup_recount else epoch)

    def get_lr(self) -> list[float]:
        return [self.lr_at(base, self.last_epoch) for base in self.base_lrs]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg) -> DasslLR:
    return DasslLR(optimizer, optim_cfg)


def warmup_note(optim_cfg) -> str | None:
    """A note when the warmup covers the whole run, which then never trains at OPTIM.LR (e.g. a
    config's one warmup epoch with OPTIM.MAX_EPOCH 1 on the command line)."""
    c = optim_cfg
    if c.WARMUP_EPOCH <= 0 or c.WARMUP_EPOCH < c.MAX_EPOCH:
        return None
    at = (f"the constant warmup LR {c.WARMUP_CONS_LR:g}" if c.WARMUP_TYPE == "constant"
          else f"the linear warmup ramp from {c.WARMUP_MIN_LR:g}")
    return (f"Note: the warmup (OPTIM.WARMUP_EPOCH {c.WARMUP_EPOCH}) is as long as the run (OPTIM.MAX_EPOCH "
            f"{c.MAX_EPOCH}): every epoch trains at {at}, never at OPTIM.LR {c.LR:g}. Add OPTIM.WARMUP_EPOCH 0 "
            "(or more epochs) to train at OPTIM.LR")

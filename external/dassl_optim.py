"""`dassl.optim`: Dassl's build_optimizer (param_groups, staged LR, its six optimizers) and
build_lr_scheduler, on promptlab's optimizers and its LR schedule (engine/optim.py), which
keeps Dassl's warmup chaining without the `verbose` argument that breaks Dassl on torch >= 2.7."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from engine.optim import OPTIMIZERS, build_lr_scheduler
from engine.optim import build_optimizer as engine_build_optimizer

DASSL_OPTIMIZERS = ("adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw")

__all__ = ["build_lr_scheduler", "build_optimizer"]


def _staged_groups(model: nn.Module, optim_cfg) -> list[dict]:
    """Children named in NEW_LAYERS train at LR; the others at LR * BASE_LR_MULT."""
    if not isinstance(model, nn.Module):
        raise TypeError("When staged_lr is True, model given to build_optimizer() must be an instance of nn.Module")
    if isinstance(model, nn.DataParallel):
        model = model.module
    new_layers = optim_cfg.NEW_LAYERS
    new_layers = [new_layers] if isinstance(new_layers, str) else list(new_layers)
    base, new = [], []
    for name, child in model.named_children():
        (new if name in new_layers else base).extend(child.parameters())
    return [{"params": base, "lr": optim_cfg.LR * optim_cfg.BASE_LR_MULT}, {"params": new}]


def build_optimizer(model, optim_cfg, param_groups=None) -> torch.optim.Optimizer:
    """Dassl's semantics: `param_groups` if given, else staged groups (OPTIM.STAGED_LR), else
    every parameter of `model` (frozen ones receive no gradient, so they never move)."""
    name = optim_cfg.NAME
    if name not in DASSL_OPTIMIZERS:
        raise ValueError(f"optim must be one of {list(DASSL_OPTIMIZERS)}, but got {name}")
    staged = optim_cfg.get("STAGED_LR", False)
    if param_groups is not None and staged:
        warnings.warn("staged_lr will be ignored, if you need to use staged_lr, "
                      "please bind it with param_groups yourself.")
    if param_groups is None:
        if staged:
            param_groups = _staged_groups(model, optim_cfg)
        else:
            param_groups = model.parameters() if isinstance(model, nn.Module) else model
    param_groups = list(param_groups)
    if name in OPTIMIZERS:
        return engine_build_optimizer(param_groups, optim_cfg)
    c = optim_cfg
    if name == "amsgrad":
        return torch.optim.Adam(param_groups, lr=c.LR, weight_decay=c.WEIGHT_DECAY,
                                betas=(c.ADAM_BETA1, c.ADAM_BETA2), amsgrad=True)
    if name == "rmsprop":
        return torch.optim.RMSprop(param_groups, lr=c.LR, momentum=c.MOMENTUM, weight_decay=c.WEIGHT_DECAY,
                                   alpha=c.RMSPROP_ALPHA)
    # radam: torch's RAdam (Dassl ships its own copy, which falls back to SGD steps early on).
    return torch.optim.RAdam(param_groups, lr=c.LR, weight_decay=c.WEIGHT_DECAY, betas=(c.ADAM_BETA1, c.ADAM_BETA2))

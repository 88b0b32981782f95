"""Trainer files written for CUDA, run on a machine without it: `.cuda()` and `.to("cuda")`
stay on the CPU, `.half()` gives fp32, and `torch.cuda.amp` (which torch already turns off
without CUDA) does so silently. One line announces it.

`install` is called when an external trainer is built on a machine without CUDA
(external/dassl_engine.py); with CUDA nothing is patched and the code runs as written, fp16
included. Factory calls with `device="cuda"` (e.g. `torch.zeros(3, device="cuda")`) are not
redirected: they still fail without CUDA (docs/EXTENDING.md).
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
from torch import nn

NOTE = ("No CUDA device: this trainer's .cuda() / .to('cuda') calls stay on the CPU, .half() gives fp32 "
        "and torch.cuda.amp is off (its fp16 code runs in fp32)")

_saved: dict[tuple[type, str], Callable] = {}


def _is_cuda(value: Any) -> bool:
    if isinstance(value, torch.device):
        return value.type == "cuda"
    return isinstance(value, str) and value.split(":")[0] == "cuda"


def _cpu_args(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    args = tuple("cpu" if _is_cuda(a) else a for a in args)
    if _is_cuda(kwargs.get("device")):
        kwargs = {**kwargs, "device": "cpu"}
    return args, kwargs


def _on_cpu(to: Callable) -> Callable:
    def to_cpu(self, *args, **kwargs):
        args, kwargs = _cpu_args(args, kwargs)
        return to(self, *args, **kwargs)

    return to_cpu


def _replacements() -> dict[tuple[type, str], Callable]:
    return {
        (torch.Tensor, "cuda"): lambda self, *args, **kwargs: self,
        (nn.Module, "cuda"): lambda self, device=None: self,
        (torch.Tensor, "half"): lambda self, *args, **kwargs: self.float(),
        (nn.Module, "half"): lambda self: self.float(),
        (torch.Tensor, "to"): _on_cpu(torch.Tensor.to),
        (nn.Module, "to"): _on_cpu(nn.Module.to),
    }


def installed() -> bool:
    return bool(_saved)


def install() -> None:
    """Patch the calls above for this process (idempotent) and print the note once."""
    if _saved:
        return
    for (owner, name), replacement in _replacements().items():
        _saved[(owner, name)] = getattr(owner, name)
        setattr(owner, name, replacement)
    warnings.filterwarnings("ignore", message=r".*CUDA is not available.*Disabling")
    warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.\w+\(args\.\.\.\)` is deprecated")
    print(NOTE)


def uninstall() -> None:
    """Restore torch's own methods (tests; a train.py process keeps the patches until it exits)."""
    for (owner, name), original in _saved.items():
        setattr(owner, name, original)
    _saved.clear()

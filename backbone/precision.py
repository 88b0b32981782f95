"""The one dtype/device policy for CLIP weights and forward passes.

Trainers set PREC (CoOp semantics):
  "fp16": the whole CLIP in half precision (OpenAI's layout: linear/conv/attention weights and
          projections in fp16, LayerNorms computed in fp32), learnable prompts cast to it;
  "fp32": everything in fp32;
  "amp":  fp32 weights, forward passes under autocast, losses scaled by a GradScaler.
`load_clip(precision=...)` also takes a torch dtype name ("float32", "float16", "bfloat16"),
which is used literally, for inference-only uses that want exactly that dtype.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch
from open_clip.model import convert_weights_to_lp
from torch import nn

from engine.errors import ConfigError
from engine.registry import did_you_mean

PRECS = ("fp16", "fp32", "amp")
_DTYPE_NAMES = ("float32", "float16", "bfloat16")


def _device_type(device: str | torch.device) -> str:
    return torch.device(device).type


def check_prec(prec: str) -> str:
    if prec not in PRECS:
        raise ConfigError(f"Unknown PREC {prec!r}.{did_you_mean(prec, PRECS)} Choose one of {', '.join(PRECS)}")
    return prec


def weight_dtype(prec: str, device: str | torch.device) -> torch.dtype:
    """The dtype CLIP's weights are held in for a PREC.

    fp16 on a CPU device falls back to fp32: half-precision training on CPU is unsupported
    for several ops and far slower than fp32.
    """
    if check_prec(prec) != "fp16":
        return torch.float32
    if _device_type(device) == "cpu":
        print("PREC fp16 on CPU: using fp32 weights instead (fp16 training on CPU is unsupported/slow)")
        return torch.float32
    return torch.float16


def resolve_dtype(precision: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    """Weight dtype for `load_clip(precision=...)`: a PREC, a torch dtype or a dtype name."""
    if isinstance(precision, torch.dtype):
        return precision
    if precision in PRECS:
        return weight_dtype(precision, device)
    if precision in _DTYPE_NAMES:
        return getattr(torch, precision)
    choices = PRECS + _DTYPE_NAMES
    raise ConfigError(
        f"Unknown precision {precision!r}.{did_you_mean(precision, choices)} "
        f"Use a PREC ({', '.join(PRECS)}) or a dtype name ({', '.join(_DTYPE_NAMES)})"
    )


def norm_cast_dtype(dtype: torch.dtype) -> torch.dtype | None:
    """What open_clip's constructors take as `cast_dtype`: it makes LayerNorms run in fp32
    when the weights are low precision (None keeps plain LayerNorms for fp32)."""
    return None if dtype == torch.float32 else dtype


def cast_model(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """Cast a CLIP in place the way OpenAI's checkpoints are: fp32 everywhere, or low
    precision for linear/conv/attention weights and projections only."""
    model.float()
    if dtype != torch.float32:
        convert_weights_to_lp(model, dtype=dtype)
    return model


def autocast(prec: str, device: str | torch.device) -> ContextManager:
    """Autocast for "amp" (fp16 on CUDA, bf16 on CPU, the dtype CPU autocast supports well);
    a no-op for "fp16"/"fp32", whose weights already fix the dtype."""
    if check_prec(prec) != "amp":
        return contextlib.nullcontext()
    device_type = _device_type(device)
    return torch.autocast(device_type, dtype=torch.float16 if device_type == "cuda" else torch.bfloat16)


def grad_scaler(prec: str, device: str | torch.device) -> torch.amp.GradScaler:
    """A GradScaler that scales only for amp on CUDA (bf16 and fp32 need no loss scaling)."""
    device_type = _device_type(device)
    enabled = check_prec(prec) == "amp" and device_type == "cuda"
    return torch.amp.GradScaler(device_type if enabled else "cpu", enabled=enabled)

"""The one dtype/device policy for CLIP weights and forward passes.

Trainers set PREC (CoOp semantics):
  "fp16": the whole CLIP in half precision (OpenAI's layout: linear/conv/attention weights and
          projections in fp16, LayerNorms computed in fp32), learnable prompts cast to it;
  "fp32": everything in fp32;
  "amp":  fp32 weights, forward passes under autocast, losses scaled by a GradScaler (CUDA:
          fp16 autocast; CPU: see `cpu_amp_dtype`).
`load_clip(precision=...)` also takes a torch dtype name ("float32", "float16", "bfloat16"),
which is used literally, for inference-only uses that want exactly that dtype.
"""
from __future__ import annotations

import contextlib
import os
from functools import lru_cache
from pathlib import Path
from typing import ContextManager

import torch
from open_clip.model import convert_weights_to_lp
from torch import nn

from engine.errors import ConfigError
from engine.registry import did_you_mean

PRECS = ("fp16", "fp32", "amp")
CPU_AMP_CHOICES = ("auto", "bf16", "fp32")  # TRAINER.CPU_AMP
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


AMX_ENV = "PROMPTLAB_CPU_AMX"  # "1" / "0": take this answer instead of probing the CPU


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has bf16 matrix units that PyTorch can use (Intel AMX: the `amx_bf16`
    flag, and the kernel's permission to use AMX tiles, which torch requests). Without them,
    bf16 autocast on CPU runs through conversions and is slower than fp32 (measured 3.5x on a
    DeAR ViT-B/16 step on an avx512_bf16 CPU without AMX: docs/PERFORMANCE.md).

    $PROMPTLAB_CPU_AMX=1 or 0 replaces the probe: to run the test suite as on the other kind of
    CPU, or where a virtual machine hides or misreports the flag."""
    forced = os.environ.get(AMX_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ConfigError(f"${AMX_ENV} must be 1 or 0 (or unset to probe the CPU), got {forced!r}")
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    if "amx_bf16" not in flags:
        return False
    init_amx = getattr(getattr(torch._C, "_cpu", None), "_init_amx", None)
    return bool(init_amx()) if init_amx is not None else True


def cpu_amp_dtype(cpu_amp: str = "auto") -> torch.dtype | None:
    """The autocast dtype of PREC amp on a CPU, or None for plain fp32: TRAINER.CPU_AMP "auto"
    picks bf16 only where `cpu_has_fast_bf16`; "bf16" and "fp32" force either."""
    if cpu_amp not in CPU_AMP_CHOICES:
        raise ConfigError(f"TRAINER.CPU_AMP must be one of {', '.join(CPU_AMP_CHOICES)}, got {cpu_amp!r}")
    if cpu_amp == "auto":
        return torch.bfloat16 if cpu_has_fast_bf16() else None
    return torch.bfloat16 if cpu_amp == "bf16" else None


def amp_note(prec: str, device: str | torch.device, cpu_amp: str = "auto") -> str | None:
    """The one log line saying what PREC amp does on a CPU (None elsewhere)."""
    if check_prec(prec) != "amp" or _device_type(device) != "cpu":
        return None
    dtype = cpu_amp_dtype(cpu_amp)
    if cpu_amp != "auto":
        return f"PREC amp on CPU: {'bf16 autocast' if dtype else 'fp32'} (forced by TRAINER.CPU_AMP {cpu_amp})"
    if dtype is not None:
        return "PREC amp on CPU: bf16 autocast (this CPU has AMX bf16 units; TRAINER.CPU_AMP fp32 turns it off)"
    return ("PREC amp on CPU: running in fp32, as this CPU has no fast bf16 units (AMX), where bf16 autocast is "
            "slower than fp32; TRAINER.CPU_AMP bf16 forces it")


def autocast(prec: str, device: str | torch.device, cpu_amp: str = "auto") -> ContextManager:
    """Autocast for "amp" (fp16 on CUDA; on CPU bf16 or nothing, see `cpu_amp_dtype`); a no-op
    for "fp16"/"fp32", whose weights already fix the dtype."""
    if check_prec(prec) != "amp":
        return contextlib.nullcontext()
    device_type = _device_type(device)
    if device_type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    dtype = cpu_amp_dtype(cpu_amp) if device_type == "cpu" else torch.bfloat16
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type, dtype=dtype)


def grad_scaler(prec: str, device: str | torch.device) -> torch.amp.GradScaler:
    """A GradScaler that scales only for amp on CUDA (bf16 and fp32 need no loss scaling)."""
    device_type = _device_type(device)
    enabled = check_prec(prec) == "amp" and device_type == "cuda"
    return torch.amp.GradScaler(device_type if enabled else "cpu", enabled=enabled)

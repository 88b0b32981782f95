"""One training over several processes started by torchrun (DistributedDataParallel semantics).

`torchrun --nproc-per-node N train.py ...` starts N processes (ranks) with WORLD_SIZE, RANK and
LOCAL_RANK set. Each takes a contiguous shard of every global batch (engine/data/samplers.py);
after the backward pass the trainer base averages the gradients over the ranks, weighted by the
shard sizes, so every rank applies the update of the whole global batch, as a single process
would. That is DDP's all-reduce done by the engine, so method code calls `self.model(...)` as
always and never sees a wrapper. Rank 0 alone writes (logs, checkpoints, results.json) and holds
the output folder; evaluations gather every rank's predictions.

Without torchrun (WORLD_SIZE unset or 1) nothing here communicates: one process, the usual path.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def launched_world_size() -> int:
    """The number of processes torchrun started (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


@contextlib.contextmanager
def process_group(use_cuda: bool) -> Iterator[None]:
    """Join torchrun's process group for the duration of a run: NCCL with one GPU per process
    (LOCAL_RANK), gloo on CPU. Other ranks' stdout is dropped: rank 0 speaks for the run."""
    if launched_world_size() <= 1:
        yield
        return
    cuda = use_cuda and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo")
    saved = sys.stdout
    devnull = open(os.devnull, "w") if not is_main() else None
    if devnull is not None:
        sys.stdout = devnull
    try:
        yield
    finally:
        sys.stdout = saved
        if devnull is not None:
            devnull.close()
        dist.destroy_process_group()


def _device() -> torch.device:
    """Where collective tensors live: the process's GPU for NCCL, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def broadcast_object(obj):
    """Rank 0's `obj` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over the ranks (float64)."""
    if world_size() == 1:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=_device())
    dist.all_reduce(tensor)
    return tensor.tolist()


def weighted_mean(values: dict[str, float], weight: float) -> dict[str, float]:
    """sum over ranks of weight * value, per key: the global-batch mean of per-shard means when
    `weight` is the shard's share of the batch. Every rank must pass the same keys."""
    if world_size() == 1:
        return values
    keys = sorted(values)
    sums = all_sum([weight * float(values[k]) for k in keys])
    return dict(zip(keys, sums))


def reduce_gradients(params: list[torch.nn.Parameter], weight: float) -> None:
    """grad <- sum over ranks of weight * grad, for every parameter with a gradient (the same on
    every rank: the same code ran). With weight = shard size / global batch size, this is the
    gradient of the global batch's mean loss. One all-reduce per dtype, over a flat buffer."""
    if world_size() == 1:
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for dtype in sorted(by_dtype, key=str):
        grads = by_dtype[dtype]
        flat = torch.cat([g.reshape(-1) for g in grads]).mul_(weight)
        dist.all_reduce(flat)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def gather_arrays(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Every rank's arrays, rank 0's first, on every rank (small: per-sample labels/predictions)."""
    if world_size() == 1:
        return arrays
    gathered: list[list[np.ndarray] | None] = [None] * world_size()
    dist.all_gather_object(gathered, arrays)
    return [a for part in gathered for a in part]

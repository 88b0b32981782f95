"""Checkpoints of learnable tensors only, in Dassl's file layout.

`OUT/<model_name>/model.pth.tar-<E>` plus a `checkpoint` file naming the newest one, as
Dassl writes them. Frozen backbone weights are never stored: a CoOp checkpoint is the
size of its context vectors, not of CLIP.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from engine.io import atomic_write, atomic_write_text

POINTER = "checkpoint"


def learnable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The parameters that train (requires_grad), detached, by state-dict key."""
    return {
        k: v.detach().clone()
        for k, v in model.state_dict(keep_vars=True).items()
        if isinstance(v, nn.Parameter) and v.requires_grad
    }


def load_learnable_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load exactly the learnable keys; any mismatch names the keys and the file."""
    expected = set(learnable_state(model))
    got = set(state)
    if expected != got:
        raise RuntimeError(
            f"Checkpoint {source} does not match this model: missing {sorted(expected - got)[:5]}, "
            f"unexpected {sorted(got - expected)[:5]}. Was it trained with another trainer or config?"
        )
    current = model.state_dict()
    for k, v in state.items():
        if current[k].shape != v.shape:
            raise RuntimeError(f"Checkpoint {source}: {k} has shape {tuple(v.shape)}, model expects {tuple(current[k].shape)}")
    model.load_state_dict(state, strict=False)


def save_checkpoint(payload: dict, model_dir: Path, filename: str, update_pointer: bool = True) -> Path:
    """Atomic save (temp file + rename) so a kill never leaves a half-written checkpoint."""
    path = Path(model_dir) / filename
    atomic_write(path, lambda tmp: torch.save(payload, tmp))
    if update_pointer:
        atomic_write_text(Path(model_dir) / POINTER, filename + "\n")
    print(f"Checkpoint saved to {path}")
    return path


def latest_checkpoint(model_dir: Path) -> Path | None:
    pointer = Path(model_dir) / POINTER
    if not pointer.is_file():
        return None
    path = Path(model_dir) / pointer.read_text().strip()
    return path if path.is_file() else None


def load_checkpoint(path: Path) -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(f'Model not found at "{path}"')
    return torch.load(path, map_location="cpu", weights_only=False)

"""Checkpoints of learnable tensors only, in Dassl's file layout, that cannot run code.

`OUT/<model_name>/model.pth.tar-<E>` plus a `checkpoint` file naming the newest one, as
Dassl writes them. Frozen backbone weights are never stored: a CoOp checkpoint is the
size of its context vectors, not of CLIP.

Files hold tensors and plain Python data only and are read with `weights_only=True`: a
crafted file that would run code when unpickled is refused, not loaded. A save is
serialised in memory and written atomically, so a full disk is a plain OSError naming the
file and a kill mid-write leaves the previous files intact.

Every file is written with a `<file>.sha256` beside it (sha256sum's format, so `sha256sum -c`
checks it too), written first, and every load verifies it: torch's zip reader does not check
its CRCs, so a flipped byte in tensor data would otherwise load as different weights. A file
without one (written by other code, or before digests existed) loads unverified.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.errors import CheckpointError, MissingFileError
from engine.io import atomic_write_bytes, atomic_write_text

POINTER = "checkpoint"
BEST = "model-best.pth.tar"
EPOCH_FILE = re.compile(r"model\.pth\.tar-(\d+)")
DIGEST_SUFFIX = ".sha256"


def epoch_file(epoch: int) -> str:
    return f"model.pth.tar-{epoch}"


class CheckpointDamagedError(CheckpointError):
    """The file is truncated or corrupt (an interrupted copy, a full disk, a bad sector)."""


def _legacy_globals() -> list:
    """What the checkpoints of earlier versions need beyond plain data: their NumPy RNG state
    (a uint32 array) and torch's version string class. Array reconstruction only; every object
    inside still goes through the restricted unpickler."""
    multiarray = getattr(np, "_core", None) or np.core
    uint32 = type(np.dtype(np.uint32))  # numpy.dtypes.UInt32DType on NumPy >= 1.25, else numpy.dtype
    return [multiarray.multiarray._reconstruct, np.ndarray, np.dtype, uint32, torch.torch_version.TorchVersion]


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
        raise CheckpointError(
            f"Checkpoint {source} does not match this model: missing {sorted(expected - got)[:5]}, "
            f"unexpected {sorted(got - expected)[:5]}. Was it trained with another trainer or config?"
        )
    current = model.state_dict()
    for k, v in state.items():
        if current[k].shape != v.shape:
            raise CheckpointError(
                f"Checkpoint {source}: {k} has shape {tuple(v.shape)}, model expects {tuple(current[k].shape)}. "
                "Was it trained with another config (e.g. another number of context tokens)?"
            )
    model.load_state_dict(state, strict=False)


def digest_path(path: Path | str) -> Path:
    """The `<file>.sha256` that records a saved file's digest."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def save_tensors(payload: dict, path: Path | str) -> None:
    """torch.save serialised in memory, then written atomically (temp file + rename): a full disk
    is an OSError naming the file, and a kill mid-write leaves the earlier file intact. Its
    digest is written first: a kill between the two leaves a file that fails verification
    (refused, never used), not one that loads unverified."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    sidecar = digest_path(path)
    previous = sidecar.read_bytes() if sidecar.is_file() else None
    atomic_write_text(sidecar, f"{hashlib.sha256(data).hexdigest()}  {Path(path).name}\n")
    try:
        atomic_write_bytes(path, data)
    except BaseException:  # the file was not replaced: its own digest goes back
        with contextlib.suppress(OSError):
            if previous is None:
                sidecar.unlink(missing_ok=True)
            else:
                atomic_write_bytes(sidecar, previous)
        raise


def remove_tensors(path: Path | str) -> None:
    """Delete a saved file and its digest."""
    Path(path).unlink(missing_ok=True)
    digest_path(path).unlink(missing_ok=True)


def read_verified(path: Path, label: str) -> bytes:
    """The file's bytes, checked against the digest recorded when it was written (if any)."""
    data = path.read_bytes()
    sidecar = digest_path(path)
    if not sidecar.is_file():
        return data
    words = sidecar.read_text(errors="replace").split()
    recorded = words[0].lower() if words else ""
    if not re.fullmatch(r"[0-9a-f]{64}", recorded):
        raise CheckpointDamagedError(f"{label} {path} cannot be verified: its digest file {sidecar} is damaged")
    if hashlib.sha256(data).hexdigest() != recorded:
        raise CheckpointDamagedError(
            f"{label} {path} is damaged: its content does not match the SHA-256 recorded when it was written "
            f"({sidecar}); it was changed after saving (a bad copy, a failing disk)"
        )
    return data


def save_checkpoint(payload: dict, model_dir: Path, filename: str, update_pointer: bool = True) -> Path:
    path = Path(model_dir) / filename
    save_tensors(payload, path)
    if update_pointer:
        atomic_write_text(Path(model_dir) / POINTER, filename + "\n")
    print(f"Checkpoint saved to {path}")
    return path


def latest_checkpoint(model_dir: Path) -> Path | None:
    """The file the `checkpoint` pointer names; a pointer naming anything but a file in its own
    folder is refused (it could point the loader anywhere on disk)."""
    pointer = Path(model_dir) / POINTER
    if not pointer.is_file():
        return None
    name = pointer.read_text().strip()
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise CheckpointError(
            f"{pointer} names {name!r}, which is not a file in its own folder; refusing to follow it. "
            f"Write the name of the newest checkpoint there (e.g. model.pth.tar-10) or delete {pointer}"
        )
    path = Path(model_dir) / name
    return path if path.is_file() else None


def epoch_checkpoints(model_dir: Path) -> dict[int, Path]:
    """Epoch -> `model.pth.tar-<epoch>` in a model folder."""
    found = {}
    for path in Path(model_dir).glob("model.pth.tar-*"):
        match = EPOCH_FILE.fullmatch(path.name)
        if match and path.is_file():
            found[int(match.group(1))] = path
    return found


def model_folders(directory: Path | str) -> list[Path]:
    """Sub-folders of a run folder that hold checkpoints (one per registered model)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.is_dir() and (
        (p / POINTER).is_file() or (p / BEST).is_file() or bool(epoch_checkpoints(p))))


def resolve_model_file(model_dir: Path, epoch: int | None) -> Path:
    """The file an evaluation loads from one model folder: epoch N, else model-best, else the
    newest (Dassl's rule)."""
    if epoch is not None:
        return model_dir / epoch_file(epoch)
    if (model_dir / BEST).is_file():
        return model_dir / BEST
    return latest_checkpoint(model_dir) or model_dir / BEST


def load_tensors(path: Path | str, what: str) -> Any:
    """A file of tensors and plain data (a checkpoint, PromptSRC's GPA state, ...): torch.load with
    weights_only=True (legacy numpy/TorchVersion entries allowed), to the CPU.

    Raises CheckpointError for a file holding Python objects (unpickling it could run code) and
    CheckpointDamagedError for a truncated or corrupt file, each naming `what` and the file.
    """
    path, label = Path(path), what[0].upper() + what[1:]
    if not path.is_file():
        raise MissingFileError(f"{label} {path} does not exist")
    try:
        data = read_verified(path, label)
    except OSError as e:
        raise CheckpointDamagedError(f"{label} {path} cannot be read ({e})") from None
    try:
        with torch.serialization.safe_globals(_legacy_globals()):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            found = re.search(r"GLOBAL (\S+)", str(e))
            held = f" ({found.group(1)})" if found else ""
            raise CheckpointError(
                f"Refusing to load {what} {path}: it holds Python objects{held}, not only tensors and plain "
                "data, so unpickling it could run code. This toolbox never writes such files; if you trust "
                "where it came from, re-save its tensors with torch.save({'state_dict': ...})"
            ) from None
        raise CheckpointDamagedError(f"{label} {path} is damaged ({e}); it cannot be read") from None
    except (RuntimeError, OSError, EOFError, zipfile.BadZipFile, ValueError) as e:
        reason = str(e).strip() or type(e).__name__
        raise CheckpointDamagedError(
            f"{label} {path} is damaged (truncated or corrupt: {reason}); it cannot be read"
        ) from None


def load_checkpoint(path: Path | str) -> dict:
    """A checkpoint dict of this toolbox, read safely (load_tensors)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f'Model not found at "{path}"')
    ckpt = load_tensors(path, "checkpoint")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a checkpoint of this toolbox (no 'state_dict' entry)")
    return ckpt


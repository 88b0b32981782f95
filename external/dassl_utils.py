"""`dassl.utils` for trainer and dataset files: Dassl's registry interface over promptlab's
registries, its file and checkpoint helpers, and its meters (promptlab's own)."""
from __future__ import annotations

import errno
import inspect
import json
import os
import warnings
from collections import OrderedDict
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Callable

from torch import nn

from engine.checkpoint import POINTER, latest_checkpoint, learnable_state, load_learnable_state, load_tensors
from engine.checkpoint import save_checkpoint as save_checkpoint_file
from engine.data.images import read_image
from engine.errors import MissingFileError
from engine.registry import Registry as EngineRegistry
from engine.utils import AverageMeter, MetricMeter, set_random_seed
from external.errors import ExternalCodeError
from external.loader import NAMED, SHADOWED, is_external

BEST = "model-best.pth.tar"

__all__ = [
    "AverageMeter", "MetricMeter", "Registry", "check_availability", "check_isfile", "collect_env_info",
    "count_num_param", "get_most_similar_str_to_a_from_b", "init_network_weights", "listdir_nohidden",
    "load_checkpoint", "load_pretrained_weights", "mkdir_if_missing", "read_image", "read_json",
    "resume_from_checkpoint", "save_checkpoint", "set_random_seed", "tolist_if_not", "write_json",
]


def _file_of(obj: Any) -> str:
    return inspect.getsourcefile(obj) or obj.__module__


class Registry:
    """Dassl's Registry interface: `register()` as a decorator, `register(obj)`, `get`,
    `registered_names`. Built on one of promptlab's registries (`backing`) when given, so what
    external files register reaches train.py, the sweep and the comparison.

    A name promptlab already has (a copy of CoOp's coop.py registers CoOp) goes to the file's
    class when the user named that file (or its folder): the code that runs is the code the user
    named, a line says so, and the run's log and manifest name the file. The built-in keeps the
    name in every process that does not load the file. A class that a named file merely imports
    (CoOp's zsclip.py imports its coop.py) leaves the built-in in place, with a line saying how
    to run it instead. Two external classes under one name are an error naming both files.
    """

    def __init__(self, name: str, backing: EngineRegistry | None = None):
        self._name = name
        self._backing = backing or EngineRegistry(name)

    def register(self, obj: Any = None, force: bool = False) -> Callable | None:
        if obj is None:
            def decorator(fn_or_class):
                self._add(fn_or_class, force)
                return fn_or_class

            return decorator
        self._add(obj, force)
        return None

    def _add(self, obj: Any, force: bool) -> None:
        name = obj.__name__
        current = self._backing.get(name) if name in self._backing else None
        if current is None or current is obj or force:
            self._backing.register(replace=True)(obj)
            return
        kind = self._name.lower()
        if is_external(current):
            raise ExternalCodeError(f"{kind} {name} is registered by two files, {_file_of(current)} and "
                                    f"{_file_of(obj)}; pass only one of them with --trainer-file")
        source = Path(_file_of(obj)).resolve()
        if source not in NAMED:
            print(f"{source}: {name} is promptlab's built-in {kind} ({current.__module__}), which is kept: this file "
                  f"was imported by another one. Name it with --trainer-file to run its {name} instead")
            return
        SHADOWED[(self._name, name)] = current
        self._backing.register(replace=True)(obj)
        print(f"{source}: its {name} replaces promptlab's built-in {kind} {name} ({current.__module__}) in this "
              "process")

    def get(self, name: str) -> Any:
        return self._backing.get(name)

    def registered_names(self) -> list[str]:
        return self._backing.names()

    def __contains__(self, name: str) -> bool:
        return name in self._backing


def mkdir_if_missing(dirname: str) -> None:
    try:
        os.makedirs(dirname, exist_ok=True)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise


def check_isfile(fpath: str) -> bool:
    """Whether `fpath` is a file; warns when it is not (Dassl's semantics)."""
    isfile = os.path.isfile(fpath)
    if not isfile:
        warnings.warn(f'No file found at "{fpath}"')
    return isfile


def read_json(fpath: str) -> Any:
    with open(fpath) as f:
        return json.load(f)


def write_json(obj: Any, fpath: str) -> None:
    mkdir_if_missing(os.path.dirname(fpath) or ".")
    with open(fpath, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def collect_env_info() -> str:
    import PIL
    from torch.utils.collect_env import get_pretty_env_info

    return f"{get_pretty_env_info()}\n        Pillow ({PIL.__version__})"


def listdir_nohidden(path: str, sort: bool = False) -> list[str]:
    items = [name for name in os.listdir(path) if not name.startswith(".")]
    return sorted(items) if sort else items


def get_most_similar_str_to_a_from_b(a: str, b: list[str]) -> str | None:
    best, chosen = -1.0, None
    for candidate in b:
        ratio = SequenceMatcher(None, a, candidate).ratio()
        if ratio >= best:
            best, chosen = ratio, candidate
    return chosen


def check_availability(requested: str, available: list[str]) -> None:
    if requested not in available:
        raise ValueError(f"The requested one is expected to belong to {available}, but got [{requested}] "
                         f"(do you mean [{get_most_similar_str_to_a_from_b(requested, available)}]?)")


def tolist_if_not(x: Any) -> list:
    return x if isinstance(x, list) else [x]


# ---- checkpoints ------------------------------------------------------------------------------------
def load_checkpoint(fpath: str) -> dict:
    """Dassl's load_checkpoint, read as this toolbox reads every checkpoint: weights_only=True, to the
    CPU (load_state_dict copies to the model's device), a pickled object refused with the file named."""
    if fpath is None:
        raise ValueError("File path is None")
    if not os.path.exists(fpath):
        raise MissingFileError(f'File is not found at "{fpath}"')
    return load_tensors(fpath, "checkpoint")


def _without_module_prefix(state: dict) -> OrderedDict:
    return OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in state.items())


def save_checkpoint(state: dict, save_dir: str, is_best: bool = False, remove_module_from_keys: bool = True,
                    model_name: str = "") -> None:
    """Dassl's save_checkpoint, written atomically: `save_dir/model_name` (default
    model.pth.tar-<epoch>), the `checkpoint` pointer, and a model-best copy if `is_best`."""
    if remove_module_from_keys:
        state = {**state, "state_dict": _without_module_prefix(state["state_dict"])}
    path = save_checkpoint_file(state, Path(save_dir), model_name or f"model.pth.tar-{state['epoch']}")
    if is_best:
        save_checkpoint_file(state, Path(save_dir), BEST, update_pointer=False)
        print(f'Best checkpoint saved to "{path.with_name(BEST)}"')


def resume_from_checkpoint(fdir: str, model: nn.Module, optimizer=None, scheduler=None) -> int:
    """Load the newest checkpoint of `fdir` (its `checkpoint` pointer); returns its epoch."""
    path = latest_checkpoint(Path(fdir))
    if path is None:
        raise MissingFileError(f"No {POINTER} file naming a checkpoint in {fdir}")
    print(f'Loading checkpoint from "{path}"')
    checkpoint = load_checkpoint(str(path))
    state = checkpoint["state_dict"]
    if set(state) == set(learnable_state(model)):
        load_learnable_state(model, state, str(path))  # promptlab's format: learnable tensors only
    else:
        model.load_state_dict(state)
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    print(f"Previous epoch: {checkpoint['epoch']}")
    return checkpoint["epoch"]


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Load the tensors of a checkpoint whose names and shapes fit `model`; others are listed."""
    checkpoint = load_checkpoint(weight_path)
    state = _without_module_prefix(checkpoint.get("state_dict", checkpoint))
    current = model.state_dict()
    matched = {k: v for k, v in state.items() if k in current and current[k].size() == v.size()}
    discarded = [k for k in state if k not in matched]
    current.update(matched)
    model.load_state_dict(current)
    if not matched:
        warnings.warn(f"Cannot load {weight_path} (check the key names manually)")
        return
    print(f"Successfully loaded pretrained weights from {weight_path}")
    if discarded:
        print(f"Layers discarded due to unmatched keys or size: {discarded}")


def count_num_param(model: nn.Module | None = None, params=None) -> int:
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    if params is not None:
        return sum(p["params"].numel() if isinstance(p, dict) else p.numel() for p in params)
    raise ValueError("model and params must provide at least one.")


def init_network_weights(model: nn.Module, init_type: str = "normal", gain: float = 0.02) -> None:
    """Dassl's initialisation: conv/linear weights by `init_type`, biases 0, norms weight 1."""
    inits = {
        "normal": lambda w: nn.init.normal_(w, 0.0, gain),
        "xavier": lambda w: nn.init.xavier_normal_(w, gain=gain),
        "kaiming": lambda w: nn.init.kaiming_normal_(w, a=0, mode="fan_in"),
        "orthogonal": lambda w: nn.init.orthogonal_(w, gain=gain),
    }
    if init_type not in inits:
        raise NotImplementedError(f"initialization method {init_type} is not implemented")

    def init(module: nn.Module) -> None:
        name = type(module).__name__
        if hasattr(module, "weight") and ("Conv" in name or "Linear" in name):
            inits[init_type](module.weight.data)
            if getattr(module, "bias", None) is not None:
                nn.init.constant_(module.bias.data, 0.0)
        elif "BatchNorm" in name or "InstanceNorm" in name:
            if module.weight is not None:
                nn.init.constant_(module.weight.data, 1.0)
            if module.bias is not None:
                nn.init.constant_(module.bias.data, 0.0)

    model.apply(init)

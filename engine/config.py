"""Layered YACS config with Dassl's keys, strict merging and did-you-mean errors.

Merge order (CoOp's train.py): defaults -> trainer nodes -> dataset yaml -> method yaml
-> CLI flags -> the trainer's per-dataset settings (`dataset_overrides`) -> trailing KEY VALUE opts.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import yaml
from yacs.config import CfgNode as CN

from engine.errors import ConfigError, MissingFileError, UserError
from engine.registry import TRAINER_REGISTRY, did_you_mean


def get_cfg_default() -> CN:
    """The Dassl keys that prompt learners use, with Dassl's default values."""
    c = CN()
    c.VERSION = 1
    c.OUTPUT_DIR = "./output"
    c.RESUME = ""
    c.SEED = -1
    c.USE_CUDA = True
    c.VERBOSE = True

    c.INPUT = CN()
    c.INPUT.SIZE = (224, 224)
    c.INPUT.INTERPOLATION = "bilinear"
    c.INPUT.TRANSFORMS = ()
    c.INPUT.NO_TRANSFORM = False
    c.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
    c.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
    c.INPUT.CROP_PADDING = 4
    c.INPUT.RRCROP_SCALE = (0.08, 1.0)

    c.DATASET = CN()
    c.DATASET.ROOT = ""
    c.DATASET.NAME = ""
    c.DATASET.SOURCE_DOMAINS = ()
    c.DATASET.TARGET_DOMAINS = ()
    c.DATASET.NUM_SHOTS = -1
    c.DATASET.SUBSAMPLE_CLASSES = "all"

    c.DATALOADER = CN()
    c.DATALOADER.NUM_WORKERS = 4
    c.DATALOADER.TRAIN_X = CN()
    c.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
    c.DATALOADER.TRAIN_X.BATCH_SIZE = 32
    c.DATALOADER.TEST = CN()
    c.DATALOADER.TEST.SAMPLER = "SequentialSampler"
    c.DATALOADER.TEST.BATCH_SIZE = 32

    c.MODEL = CN()
    c.MODEL.INIT_WEIGHTS = ""
    c.MODEL.BACKBONE = CN()
    c.MODEL.BACKBONE.NAME = ""
    c.MODEL.BACKBONE.PRETRAINED = True
    c.MODEL.HEAD = CN()
    c.MODEL.HEAD.NAME = ""

    c.OPTIM = CN()
    c.OPTIM.NAME = "adam"
    c.OPTIM.LR = 0.0003
    c.OPTIM.WEIGHT_DECAY = 5e-4
    c.OPTIM.MOMENTUM = 0.9
    c.OPTIM.SGD_DAMPNING = 0
    c.OPTIM.SGD_NESTEROV = False
    c.OPTIM.ADAM_BETA1 = 0.9
    c.OPTIM.ADAM_BETA2 = 0.999
    c.OPTIM.LR_SCHEDULER = "single_step"
    c.OPTIM.STEPSIZE = (-1,)
    c.OPTIM.GAMMA = 0.1
    c.OPTIM.MAX_EPOCH = 10
    c.OPTIM.WARMUP_EPOCH = -1
    c.OPTIM.WARMUP_TYPE = "linear"
    c.OPTIM.WARMUP_CONS_LR = 1e-5
    c.OPTIM.WARMUP_MIN_LR = 1e-5
    c.OPTIM.WARMUP_RECOUNT = True

    c.TRAIN = CN()
    c.TRAIN.CHECKPOINT_FREQ = 0
    c.TRAIN.PRINT_FREQ = 10

    c.TEST = CN()
    c.TEST.EVALUATOR = "Classification"
    c.TEST.PER_CLASS_RESULT = False
    c.TEST.NO_TEST = False
    c.TEST.SPLIT = "test"
    c.TEST.FINAL_MODEL = "last_step"
    # reuse the frozen image features of earlier evaluations where a method leaves the image
    # tower untouched (engine/feature_cache.py); the results are the same either way
    c.TEST.FEATURE_CACHE = True

    c.TRAINER = CN()
    c.TRAINER.NAME = ""
    # PREC amp on a CPU: "auto" autocasts to bf16 only where the CPU has fast bf16 units (AMX),
    # else runs fp32; "bf16" / "fp32" force either (backbone/precision.py)
    c.TRAINER.CPU_AMP = "auto"

    # The protocol of the run (MMRL's TASK), for methods that evaluate or configure differently
    # per protocol: B2N base-to-new, FS few-shot, CD cross-dataset (trainers/representation.py).
    c.TASK = "B2N"
    return c


def add_trainer_nodes(cfg: CN) -> None:
    """Add `TRAINER.<CONFIG_NODE>` for every registered trainer that declares one.

    Each trainer declares its keys next to its code (class attributes CONFIG_NODE and
    CONFIG), so a method yaml may carry several trainers' keys, as CoOp's configs do.
    """
    for name in TRAINER_REGISTRY.names():
        cls = TRAINER_REGISTRY.get(name)
        node = getattr(cls, "CONFIG_NODE", None)
        if node and node not in cfg.TRAINER:
            cfg.TRAINER[node] = CN(dict(cls.CONFIG))


# Functions that add keys after the trainer nodes, for code that declares its keys elsewhere
# than a trainer's CONFIG: a dataset's own node (datasets/image_folder.py) and, when train.py
# runs trainer files written for Dassl, their `extend_cfg` or YAML defaults (external/).
CONFIG_EXTENSIONS: list[Callable[[CN], None]] = []


def get_cfg(trainer: str = "") -> CN:
    """The defaults with every trainer's node and the extensions' keys. `trainer` (TRAINER.NAME)
    is set first: external code's keys are applied per trainer (external/config_keys.py)."""
    cfg = get_cfg_default()
    cfg.TRAINER.NAME = trainer
    add_trainer_nodes(cfg)
    for extend in CONFIG_EXTENSIONS:
        extend(cfg)
    return cfg


def dataset_overrides(cfg: CN, opts: Iterable[str]) -> list[str]:
    """KEY VALUE pairs of the trainer's per-dataset settings (its `dataset_overrides(cfg)`, e.g.
    MMRL's official trainers/config.py), to merge after the config files and before `opts`, the
    command line, so that the command line still wins. They are resolved on the config as `opts`
    will leave it (dataset, TASK), as the official code reads TASK from the command line."""
    name = cfg.TRAINER.NAME
    hook = getattr(TRAINER_REGISTRY.get(name), "dataset_overrides", None) if name in TRAINER_REGISTRY else None
    if hook is None:
        return []
    final = cfg.clone()
    merge_list(final, opts)
    return hook(final)


def _flat_keys(node: CN, prefix: str = "") -> list[str]:
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, CN):
            keys += _flat_keys(v, full + ".")
    return keys


class ConfigKeyError(UserError, KeyError):
    """Unknown config key; str() is the plain message (KeyError would quote it)."""


def _check_keys(node: CN, update: dict[str, Any], source: str, valid: list[str], prefix: str = "") -> None:
    for key, value in update.items():
        full = f"{prefix}{key}"
        if key not in node:
            raise ConfigKeyError(f"Unknown config key {full!r} in {source}.{did_you_mean(full, valid)}")
        if isinstance(value, dict) and isinstance(node[key], CN):
            _check_keys(node[key], value, source, valid, full + ".")


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that gives one key twice (PyYAML would keep the last silently)."""

    def __init__(self, key, first: yaml.Mark, second: yaml.Mark):
        super().__init__(f"{key!r} is given twice, at line {first.line + 1} and at line {second.line + 1}")
        self.problem_mark = second
        self.problem = str(self)


class StrictLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DuplicateKeyError(key, seen[key], key_node.start_mark)
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, StrictLoader.construct_mapping)


def read_yaml(path: str, flag: str = "") -> dict:
    """A yaml config file as a dict; a missing file, a syntax error or a key given twice names the
    file (and the flag that gave it) and the line."""
    where = f" (given by {flag})" if flag else ""
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=StrictLoader) or {}
    except FileNotFoundError:
        raise MissingFileError(f"Config file {path}{where} does not exist. Pick one under configs/ "
                               "(e.g. configs/trainers/CoOp/vit_b16_ep50.yaml)") from None
    except IsADirectoryError:
        raise MissingFileError(f"Config file {path}{where} is a folder; give a .yaml file in it") from None
    except DuplicateKeyError as e:
        raise ConfigError(f"Config file {path}{where}: {e}. Keep one of them") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"Config file {path}{where} is not valid YAML{line}: {problem}. Fix that line") from None
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path}{where} must hold KEY: VALUE mappings, not a {type(data).__name__}")
    return data


def merge_file(cfg: CN, path: str, flag: str = "") -> None:
    """Merge a yaml file, naming the file and the closest valid key on a typo."""
    update = read_yaml(path, flag)
    _check_keys(cfg, update, path, _flat_keys(cfg))
    try:
        cfg.merge_from_other_cfg(CN(update))
    except (ValueError, AssertionError, KeyError) as e:
        raise ConfigError(f"Config file {path}: {e}") from None


def merge_list(cfg: CN, opts: Iterable[str], source: str = "the command line") -> None:
    """Merge trailing `KEY VALUE` pairs (yacs' merge_from_list) with friendly errors."""
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigError(f"Options on {source} must be KEY VALUE pairs, got an odd count: {opts}")
    valid = _flat_keys(cfg)
    for key in opts[0::2]:
        if key not in valid:
            raise ConfigKeyError(f"Unknown config key {key!r} on {source}.{did_you_mean(key, valid)}")
    for key, value in zip(opts[0::2], opts[1::2]):
        try:
            cfg.merge_from_list([key, value])
        except (ValueError, AssertionError, KeyError) as e:
            raise ConfigError(f"Config key {key} on {source}: cannot take {value!r} ({e})") from None


def check_values(cfg: CN) -> None:
    """Values no run can mean, refused before anything is built: a NaN or infinite number
    anywhere, a negative learning rate, batch sizes and image sizes below 1."""
    for key in _flat_keys(cfg):
        value = cfg
        for part in key.split("."):
            value = value[part]
        numbers = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
            raise ConfigError(f"{key} is {value}: a config value must be a finite number")
    if cfg.OPTIM.LR < 0:
        raise ConfigError(f"OPTIM.LR {cfg.OPTIM.LR} is negative: the optimiser would climb the loss. Give a rate >= 0 "
                          "(the method's configs under configs/trainers/ have the published ones)")
    for key, size in (("DATALOADER.TRAIN_X.BATCH_SIZE", cfg.DATALOADER.TRAIN_X.BATCH_SIZE),
                      ("DATALOADER.TEST.BATCH_SIZE", cfg.DATALOADER.TEST.BATCH_SIZE)):
        if size < 1:
            raise ConfigError(f"{key} {size}: a batch holds at least 1 image")
    size = cfg.INPUT.SIZE
    if len(size) != 2 or not all(isinstance(v, int) and v >= 1 for v in size):
        raise ConfigError(f"INPUT.SIZE {tuple(size)}: give (height, width), two whole numbers >= 1, "
                          "e.g. INPUT.SIZE \"(224, 224)\"")

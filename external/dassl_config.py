"""`dassl.config`: Dassl's default config, i.e. promptlab's (engine/config.py, which carries the
keys prompt learners use) plus Dassl's remaining general keys, so that a method's yaml written
for Dassl merges. Dassl's domain-adaptation and semi-supervised trainer nodes are left out."""
from __future__ import annotations

from yacs.config import CfgNode as CN

from engine.config import get_cfg_default as engine_defaults

# Dassl's defaults for the keys promptlab's config does not have (Dassl's values).
DASSL_ONLY_DEFAULTS = {
    "INPUT": {
        "CUTOUT_N": 1, "CUTOUT_LEN": 16, "GN_MEAN": 0.0, "GN_STD": 0.15, "RANDAUGMENT_N": 2,
        "RANDAUGMENT_M": 10, "COLORJITTER_B": 0.4, "COLORJITTER_C": 0.4, "COLORJITTER_S": 0.4,
        "COLORJITTER_H": 0.1, "RGS_P": 0.2, "GB_P": 0.5, "GB_K": 21,
    },
    "DATASET": {
        "NUM_LABELED": -1, "VAL_PERCENT": 0.1, "STL10_FOLD": -1, "CIFAR_C_TYPE": "", "CIFAR_C_LEVEL": 1,
        "ALL_AS_UNLABELED": False,
    },
    "DATALOADER": {
        "K_TRANSFORMS": 1, "RETURN_IMG0": False,
        "TRAIN_X": {"N_DOMAIN": 0, "N_INS": 16},
        "TRAIN_U": {"SAME_AS_X": True, "SAMPLER": "RandomSampler", "BATCH_SIZE": 32, "N_DOMAIN": 0, "N_INS": 16},
    },
    "MODEL": {"HEAD": {"HIDDEN_LAYERS": (), "ACTIVATION": "relu", "BN": True, "DROPOUT": 0.0}},
    "OPTIM": {"RMSPROP_ALPHA": 0.99, "STAGED_LR": False, "NEW_LAYERS": (), "BASE_LR_MULT": 0.1},
    "TRAIN": {"COUNT_ITER": "train_x"},
    "TEST": {"COMPUTE_CMAT": False},
}


def add_missing(cfg: CN, defaults: dict) -> None:
    """Add the keys of `defaults` that `cfg` lacks; existing values are kept."""
    for key, value in defaults.items():
        if isinstance(value, dict):
            if key not in cfg:
                cfg[key] = CN()
            add_missing(cfg[key], value)
        elif key not in cfg:
            cfg[key] = value


def add_dassl_keys(cfg: CN) -> None:
    add_missing(cfg, DASSL_ONLY_DEFAULTS)


def get_cfg_default() -> CN:
    cfg = engine_defaults()
    add_dassl_keys(cfg)
    return cfg


def clean_cfg(cfg: CN, trainer: str) -> None:
    """Drop every TRAINER node but NAME and the trainer's own (for a shorter print(cfg))."""
    for key in list(cfg.TRAINER.keys()):
        if key not in ("NAME", trainer.upper()):
            cfg.TRAINER.pop(key, None)

"""open_clip model configs shipped in this repo (backbone/model_configs/<name>.json).

A repo config is an open_clip model config plus optional keys of ours:
  "vision_stem": "conv"  -> ConvStem replaces the patch projection.
Weights, when shipped, live beside it as backbone/weights/<name>.pt (a state dict).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from open_clip.model import CLIP
from open_clip.tokenizer import SimpleTokenizer

from backbone.stems import ConvStem

CONFIG_DIR = Path(__file__).parent / "model_configs"
WEIGHTS_DIR = Path(__file__).parent / "weights"
_OUR_KEYS = ("vision_stem",)


def repo_config_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def read_config(name_or_path: str | Path) -> dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.json"
    with open(path) as f:
        return json.load(f)


def build_model(config: dict, cast_dtype: torch.dtype | None = None) -> CLIP:
    """A randomly initialised open_clip CLIP for a repo config (`cast_dtype` as open_clip's:
    fp16/bf16 make LayerNorms compute in fp32 for low-precision weights)."""
    config = dict(config)
    stem = config.pop("vision_stem", None)
    model = CLIP(**{k: v for k, v in config.items() if k not in _OUR_KEYS}, cast_dtype=cast_dtype)
    if stem == "conv":
        vision = config["vision_cfg"]
        model.visual.conv1 = ConvStem(vision["width"], vision["patch_size"])
    elif stem is not None:
        raise ValueError(f"Unknown vision_stem {stem!r}; supported: 'conv'")
    return model


def build_tokenizer(config: dict) -> SimpleTokenizer:
    return SimpleTokenizer(context_length=config["text_cfg"].get("context_length", 77))

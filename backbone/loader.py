"""load_clip: every way a config names a CLIP (MODEL.BACKBONE.NAME) -> a frozen ClipBackbone.

Names:
  CoOp/OpenAI names ("RN50", "ViT-B/16", "ViT-L/14@336px", ...): open_clip's quick-gelu
      architecture with OpenAI's weights (see backbone.sources for where they are looked for);
  repo configs ("tiny-test", ...): backbone/model_configs/<name>.json, weights from
      backbone/weights/<name>.pt;
  "ARCH:TAG" (e.g. "ViT-B-16:laion2b_s34b_b88k"): an open_clip architecture and pretrained tag;
  "ARCH:/path/to/file": an open_clip architecture with a state dict from that file;
  "/path/to/file": an OpenAI JIT archive or OpenAI-format state dict (architecture inferred).
pretrained=False (Dassl's MODEL.BACKBONE.PRETRAINED) gives a random init of the architecture.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
from open_clip.factory import get_model_config, get_tokenizer, list_models
from open_clip.model import CLIP, build_model_from_openai_state_dict
from open_clip.pretrained import is_pretrained_cfg, list_pretrained_tags_by_model
from open_clip.tokenizer import SimpleTokenizer

from backbone import model_configs
from backbone.clip import ClipBackbone, Tokenizer
from backbone.precision import cast_model, norm_cast_dtype, resolve_dtype
from backbone.sources import META_KEYS, pretrained_file, read_state_dict
from engine.cache import file_digest
from engine.errors import BackboneError, ConfigError, DataError, MissingFileError
from engine.registry import did_you_mean

COOP_ARCHS = {
    "RN50": "RN50-quickgelu",
    "RN101": "RN101-quickgelu",
    "RN50x4": "RN50x4-quickgelu",
    "RN50x16": "RN50x16-quickgelu",
    "RN50x64": "RN50x64-quickgelu",
    "ViT-B/32": "ViT-B-32-quickgelu",
    "ViT-B/16": "ViT-B-16-quickgelu",
    "ViT-L/14": "ViT-L-14-quickgelu",
    "ViT-L/14@336px": "ViT-L-14-336-quickgelu",
}
_WEIGHT_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors"}


def load_clip(
    name: str,
    *,
    pretrained: bool = True,
    precision: str | torch.dtype = "fp32",
    device: str | torch.device = "cpu",
) -> ClipBackbone:
    """A frozen (requires_grad=False, eval) ClipBackbone on `device`.

    `precision` is a PREC ("fp16", "fp32", "amp"; see backbone.precision) or a torch dtype
    (name); it sets the weight dtype. The model is built directly on `device`.
    """
    dtype = resolve_dtype(precision, device)
    cast = norm_cast_dtype(dtype)
    with torch.device(device):
        model, tokenizer = _build(name, pretrained, cast)
    cast_model(model, dtype).to(device)
    model.requires_grad_(False)
    return ClipBackbone(model, tokenizer, name)


def _build(name: str, pretrained: bool, cast: torch.dtype | None) -> tuple[CLIP, Tokenizer]:
    kind, arch, weights = _resolve(name, pretrained)
    if kind == "repo":
        return _repo(name, weights, cast)
    if kind == "file":
        return _openai_file(weights(), cast)
    return _arch(arch, cast, weights)


def _resolve(name: str, pretrained: bool) -> tuple[str, str, Callable[[], str] | None]:
    """(kind, architecture, weights-file finder) for a backbone name: kind is "arch" (an open_clip
    architecture), "repo" (a repo config) or "file" (an OpenAI checkpoint); the finder is None
    for a random init. Nothing is read or downloaded until the finder is called."""
    if name in COOP_ARCHS:
        arch = COOP_ARCHS[name]
        return "arch", arch, (lambda: pretrained_file(arch, "openai", label=name)) if pretrained else None
    if name in model_configs.repo_config_names():
        return "repo", name, (lambda: str(_repo_weights(name))) if pretrained else None
    arch, _, source = name.partition(":")
    if source and arch in list_models():
        return "arch", arch, _arch_source(arch, source) if pretrained else None
    if os.path.isfile(name):
        if not pretrained:
            raise ConfigError(f"{name} is a weights file but pretrained=False; name an architecture for a random init")
        return "file", name, lambda: name
    if name in list_models():
        if not pretrained:
            return "arch", name, None
        tags = list_pretrained_tags_by_model(name)
        raise ConfigError(
            f"open_clip architecture {name!r} needs weights: use '{name}:TAG' (tags: {', '.join(tags) or 'none'}) "
            f"or '{name}:/path/to/state_dict.pt', or pretrained=False for a random init"
        )
    if Path(name).suffix in _WEIGHT_SUFFIXES:
        raise MissingFileError(f"MODEL.BACKBONE.NAME: no weights file {name}")
    raise ConfigError(
        f"MODEL.BACKBONE.NAME: unknown CLIP backbone {name!r}.{did_you_mean(name, [*COOP_ARCHS, *model_configs.repo_config_names(), *list_models()])} "
        f"Valid names: CoOp/OpenAI {', '.join(COOP_ARCHS)}; repo configs {', '.join(model_configs.repo_config_names())}; "
        "any open_clip architecture as 'ARCH:TAG' (e.g. 'ViT-B-16:laion2b_s34b_b88k'; see open_clip.list_pretrained()) "
        "or 'ARCH:/path/to/state_dict.pt'; or the path of an OpenAI checkpoint file"
    )


def weights_fingerprint(name: str, pretrained: bool = True) -> str:
    """What identifies a backbone's weights without loading them: "sha256:<digest of the weights
    file>", or "random-init:<architecture>" (a random init is fixed by the run's seed)."""
    _, arch, weights = _resolve(name, pretrained)
    if weights is None:
        return f"random-init:{arch}"
    return f"sha256:{file_digest(weights())}"


def weights_file(name: str, pretrained: bool = True) -> str | None:
    """The file load_clip reads the weights from (None for a random init)."""
    _, _, weights = _resolve(name, pretrained)
    return weights() if weights is not None else None


def _arch_source(arch: str, source: str) -> Callable[[], str]:
    if is_pretrained_cfg(arch, source):
        return lambda: pretrained_file(arch, source)
    if os.path.isfile(source):
        return lambda: source
    tags = list_pretrained_tags_by_model(arch)
    raise ConfigError(
        f"{source!r} is neither a pretrained tag of {arch} nor an existing file.{did_you_mean(source, tags)} "
        f"Tags: {', '.join(tags) or 'none'}"
    )


def _arch(arch: str, cast: torch.dtype | None, weights: Callable[[], str] | None) -> tuple[CLIP, Tokenizer]:
    """open_clip architecture `arch`, random or with weights from the file `weights()` finds
    (looked up before the model is built, so a missing file fails fast)."""
    cfg = get_model_config(arch)
    if cfg.get("custom_text") or "multimodal_cfg" in cfg or "timm_model_name" in cfg["vision_cfg"]:
        raise BackboneError(f"{arch} is not an OpenAI-style CLIP (custom text/timm tower); ClipBackbone cannot open it")
    path = weights() if weights is not None else None
    model = CLIP(**cfg, cast_dtype=cast)
    if path is not None:
        _load(model, read_state_dict(path), f"{arch} from {path}")
    return model, get_tokenizer(arch)


def _repo_weights(name: str) -> Path:
    path = model_configs.WEIGHTS_DIR / f"{name}.pt"
    if not path.is_file():
        raise MissingFileError(
            f"No weights for repo model {name!r}: expected a state dict at {path}. Train the model and "
            f"torch.save its state_dict() there (tools/pretrain_tiny_clip.py does this for tiny-attr), "
            "or set pretrained=False (MODEL.BACKBONE.PRETRAINED False) for a random init"
        )
    return path


def _repo(name: str, weights: Callable[[], str] | None, cast: torch.dtype | None) -> tuple[CLIP, Tokenizer]:
    config = model_configs.read_config(name)
    model = model_configs.build_model(config, cast_dtype=cast)
    if weights is not None:
        path = weights()
        _load(model, read_state_dict(path), f"{name} from {path}")
    return model, model_configs.build_tokenizer(config)


def _openai_file(path: str, cast: torch.dtype | None) -> tuple[CLIP, Tokenizer]:
    return _openai_state(read_state_dict(path), cast, path)


def _openai_state(state: dict[str, torch.Tensor], cast: torch.dtype | None, source: str) -> tuple[CLIP, Tokenizer]:
    if "text_projection" not in state or not ("visual.proj" in state or "visual.attnpool.c_proj.weight" in state):
        raise DataError(
            f"{source} is not an OpenAI-format CLIP checkpoint, so its architecture cannot be inferred; "
            "load it as 'ARCH:/path' with its open_clip architecture"
        )
    model = build_model_from_openai_state_dict(dict(state), cast_dtype=cast).float()
    _load(model, dict(state), source)  # again: open_clip loads into fp16 weights, which would round fp32 files
    return model, SimpleTokenizer(context_length=model.context_length)


def repo_config_of(state: dict[str, torch.Tensor]) -> str | None:
    """The repo config whose model has exactly these state-dict keys and shapes (e.g. the
    tiny-attr weights file), else None. Candidates are built on the meta device: no memory."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for name in model_configs.repo_config_names():
        with torch.device("meta"):
            candidate = model_configs.build_model(model_configs.read_config(name))
        if {k: tuple(v.shape) for k, v in candidate.state_dict().items()} == shapes:
            return name
    return None


def clip_from_state_dict(state: dict[str, torch.Tensor], dtype: torch.dtype, source: str = "the state dict") -> tuple[CLIP, Tokenizer]:
    """The trainable open_clip CLIP (weights in `dtype`, as `cast_model` lays them out) that a
    state dict describes: a repo config it matches key for key, else the architecture OpenAI's
    build_model infers from an OpenAI-format state dict (heads = width / 64). For the OpenAI
    `clip` layer, whose build_model takes a state dict (external/openai_clip.py)."""
    state = {k: v for k, v in state.items() if k not in META_KEYS}
    cast = norm_cast_dtype(dtype)
    name = repo_config_of(state)
    if name is None:
        model, tokenizer = _openai_state(state, cast, source)
    else:
        config = model_configs.read_config(name)
        model = model_configs.build_model(config, cast_dtype=cast)
        _load(model, dict(state), f"{name} from {source}")
        tokenizer = model_configs.build_tokenizer(config)
    return cast_model(model, dtype), tokenizer


def _load(model: CLIP, state: dict[str, torch.Tensor], what: str) -> None:
    if "logit_scale" in state:
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise DataError(f"Weights do not fit {what}: {e}") from e

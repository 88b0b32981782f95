"""OpenAI's `clip` package API over open_clip and promptlab's weight lookup, for trainer files
written against it (compat/clip re-exports these names as `clip.clip`, `clip.model` and
`clip.simple_tokenizer`).

What it keeps from OpenAI's package: the names and signatures; `_MODELS` (OpenAI's nine models,
plus the repo models that ship weights, e.g. tiny-attr); `tokenize` with OpenAI's ids, int32
output and its "too long" error; `build_model` returning a model with OpenAI's module names
and calling conventions (backbone/openai_view.py); `load` returning (model, preprocess).

What differs, and why:
- `_download` never downloads into ~/.cache/clip on its own: it looks where backbone/sources.py
  looks (CLIP_CACHE_DIR or ~/.cache/clip, the Hugging Face cache, then a download only when
  online) and fails at once with the same message otherwise. A file named as in OpenAI's URL is
  checked against the SHA256 the URL carries.
- `build_model` and `load` keep fp32 weights without CUDA (OpenAI's build_model makes them
  fp16), with a one-line note; with CUDA they are fp16, as OpenAI's.
- `tokenize`'s default context length is that of the last model built (77 for every OpenAI
  model, 32 for tiny-attr), so trainer files that call `clip.tokenize(text)` work on both.
- `_MODELS` also takes the path of a weights file as its own entry, as MODEL.BACKBONE.NAME may
  be one for the built-in trainers.
- `convert_weights` converts to fp16 with CUDA and leaves fp32 without it, as `build_model` does.
- Forked model code is not this module's: `build_model(state_dict, design_details)` (MaPLe's
  fork) fails with a message naming the call. A repository that ships its fork runs it
  (external/forks.py), with `fork_models` and `_download` serving it promptlab's weights.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import regex
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import convert_weights_to_lp
from open_clip.pretrained import get_pretrained_cfg
from open_clip.tokenizer import SimpleTokenizer as OpenClipTokenizer
from open_clip.tokenizer import default_bpe
from torch import nn
from torchvision import transforms as T

from backbone.loader import COOP_ARCHS, clip_from_state_dict
from backbone.model_configs import WEIGHTS_DIR, repo_config_names
from backbone.openai_view import OpenAICLIP, openai_view
from backbone.sources import pretrained_file, read_state_dict
from engine.cache import file_digest, user_cache_dir
from engine.errors import BackboneError, CheckpointError, MissingFileError, UnknownNameError, UsageError, UserError
from engine.io import atomic_write

OPENAI_CONTEXT_LENGTH = 77
SPECIAL_TOKENS = ("<|startoftext|>", "<|endoftext|>")



class ModelNames(dict):
    """`clip._MODELS`: name -> URL (or weights file). A weights file's path is its own entry, so
    `clip._MODELS[cfg.MODEL.BACKBONE.NAME]` works for every name train.py accepts as a file."""

    def __missing__(self, name: str) -> str:
        if isinstance(name, str) and os.path.isfile(name):
            return name
        raise UnknownNameError(f"MODEL.BACKBONE.NAME {name!r} is neither one of clip._MODELS ({', '.join(self)}) "
                               "nor a weights file")


class ForkModelNames(ModelNames):
    """`_MODELS` for a repository's own clip package: OpenAI's models and weights files only.
    promptlab's own architectures (tiny-attr) are refused by name: OpenAI's `build_model`
    infers a CLIP from the layout of OpenAI's weights, and forks load state dicts with
    strict=False, so such weights would build a wrong model without a word."""

    def __init__(self, urls: dict[str, str], package: Path):
        super().__init__(urls)
        self.package = package

    def __missing__(self, name: str) -> str:
        if name in repo_config_names():
            raise BackboneError(
                f"MODEL.BACKBONE.NAME {name} is promptlab's own architecture, which the model code of {self.package} "
                "cannot build (it reads OpenAI's weight layout). Use an OpenAI CLIP (e.g. ViT-B/16) or an OpenAI-format "
                "weights file; or, for a file that needs none of that package's own model code, run it on promptlab's clip "
                "layer: --trainer-file compat/clip"
            )
        return super().__missing__(name)


_OPENAI_URLS = {name: get_pretrained_cfg(arch, "openai")["url"] for name, arch in COOP_ARCHS.items()}
_MODELS = ModelNames(_OPENAI_URLS)
_MODELS.update({name: str(WEIGHTS_DIR / f"{name}.pt") for name in repo_config_names()
                if (WEIGHTS_DIR / f"{name}.pt").is_file()})
_OPENAI_NAME_OF_URL = {url: name for name, url in _OPENAI_URLS.items()}


def fork_models(package: Path) -> ForkModelNames:
    return ForkModelNames(_OPENAI_URLS, package)

_state = {"context_length": OPENAI_CONTEXT_LENGTH, "fp32_note_shown": False}


class TextTooLongError(UserError, RuntimeError):
    """A text longer than the context length, with truncate=False (OpenAI raises RuntimeError)."""


class SimpleTokenizer(OpenClipTokenizer):
    """OpenAI's byte-level BPE tokenizer: open_clip's (the same vocabulary and merges), with
    OpenAI's names for the two special tokens, which OpenAI's text may also contain."""

    def __init__(self, bpe_path: str = default_bpe()):
        super().__init__(bpe_path=bpe_path)
        ids = (self.sot_token_id, self.eot_token_id)
        for token, index in zip(SPECIAL_TOKENS, ids):
            del self.encoder[self.decoder[index]]
            self.encoder[token] = index
            self.decoder[index] = token
        self.cache = {token: token for token in SPECIAL_TOKENS}
        rest = self.pat.pattern.split("|", 2)[2]  # the word pattern after open_clip's two special tokens
        self.pat = regex.compile("|".join(regex.escape(t) for t in SPECIAL_TOKENS) + "|" + rest, regex.IGNORECASE)


_tokenizer: SimpleTokenizer | None = None


def _shared_tokenizer() -> SimpleTokenizer:
    global _tokenizer
    if _tokenizer is None:
        _tokenizer = SimpleTokenizer()
    return _tokenizer


def available_models() -> list[str]:
    return list(_MODELS)


def tokenize(texts: str | Sequence[str], context_length: int | None = None, truncate: bool = False) -> torch.Tensor:
    """int32 [N, context_length]: start token, BPE ids, end token, zeros (OpenAI's layout).

    A text that does not fit raises (truncate=False) or is cut, keeping the end token last.
    """
    if isinstance(texts, str):
        texts = [texts]
    length = context_length or _state["context_length"]
    tok = _shared_tokenizer()
    sot, eot = (tok.encoder[t] for t in SPECIAL_TOKENS)
    result = torch.zeros(len(texts), length, dtype=torch.int)
    for i, text in enumerate(texts):
        ids = [sot, *tok.encode(text), eot]
        if len(ids) > length:
            if not truncate:
                raise TextTooLongError(f"Input {text} is too long for context length {length}")
            ids = ids[:length]
            ids[-1] = eot
        result[i, : len(ids)] = torch.tensor(ids)
    return result


def _check_sha256(path: str, url: str) -> None:
    """OpenAI's URLs carry the SHA256 of the file they name; a local copy must match it."""
    expected = url.split("/")[-2]
    if Path(path).name != os.path.basename(url) or len(expected) != 64:
        return
    digest = file_digest(path)
    if digest != expected:
        raise CheckpointError(
            f"{path}: its SHA256 {digest} is not the {expected} of {url}; the file is damaged or another "
            "model. Delete it and fetch it again"
        )


def _torch_loadable(path: str) -> str:
    """Trainer files open the weights with torch.jit.load / torch.load: a safetensors file from
    the Hugging Face cache is converted once into promptlab's cache, keyed by its digest."""
    if not path.endswith(".safetensors"):
        return path
    target = user_cache_dir("openai-clip", f"{file_digest(path)}.pt")
    if not target.is_file():
        state = read_state_dict(path)
        atomic_write(target, lambda tmp: torch.save(state, tmp))
    return str(target)


def _download(url: str, root: str | None = None) -> str:
    """The local weights file for a `_MODELS` URL (see the module docstring)."""
    if os.path.isfile(url):
        return url
    name = _OPENAI_NAME_OF_URL.get(url)
    if name is None:
        raise UsageError(
            f"clip._download: {url} is not one of clip._MODELS' URLs ({', '.join(_MODELS)}); promptlab "
            "only finds known CLIP weights. Pass the path of a weights file instead"
        )
    local = Path(root).expanduser() / os.path.basename(url) if root else None
    path = str(local) if local is not None and local.is_file() else pretrained_file(COOP_ARCHS[name], "openai", label=name)
    _check_sha256(path, url)
    return _torch_loadable(path)


def _weight_dtype() -> torch.dtype:
    if torch.cuda.is_available():
        return torch.float16
    if not _state["fp32_note_shown"]:
        print("clip.build_model: no CUDA device, so CLIP stays in fp32 (OpenAI's build_model converts it to fp16)")
        _state["fp32_note_shown"] = True
    return torch.float32


def build_model(state_dict: dict, design_details: dict | None = None) -> OpenAICLIP:
    """A CLIP with OpenAI's module interface from an OpenAI-format (or repo-model) state dict,
    in eval mode with trainable weights, as OpenAI's build_model returns it."""
    if design_details is not None:
        raise UsageError(
            "clip.build_model(state_dict, design_details) is a forked CLIP (MaPLe-style design_details), which "
            "promptlab's clip layer does not run. Run the trainer file from inside its repository, whose own clip/ "
            "it then imports, or name that package: --trainer-file path/to/clip (docs/EXTENDING.md)"
        )
    model, tokenizer = clip_from_state_dict(dict(state_dict), _weight_dtype())
    _state["context_length"] = tokenizer.context_length
    return openai_view(model).eval()


def convert_weights(model: nn.Module) -> None:
    """OpenAI's conversion of the linear, convolution, attention and projection weights to
    fp16; without CUDA they stay fp32, as `build_model` leaves them there."""
    dtype = _weight_dtype()
    if dtype != torch.float32:
        convert_weights_to_lp(model, dtype)


def _convert_image_to_rgb(image):
    return image.convert("RGB")


def _transform(n_px: int) -> T.Compose:
    """OpenAI's preprocess: bicubic resize of the short side, centre crop, RGB, CLIP's mean/std."""
    return T.Compose([
        T.Resize(n_px, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(n_px),
        _convert_image_to_rgb,
        T.ToTensor(),
        T.Normalize(OPENAI_DATASET_MEAN, OPENAI_DATASET_STD),
    ])


def load(name: str, device: str | torch.device | None = None, jit: bool = False,
         download_root: str | None = None) -> tuple[nn.Module, T.Compose]:
    """(model, preprocess) for a `_MODELS` name or a weights file; fp32 on the CPU."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if name in _MODELS:
        path = _download(_MODELS[name], download_root)
    elif os.path.isfile(name):
        path = name
    else:
        raise MissingFileError(f"Model {name} not found; available models = {available_models()}")
    if jit:
        print("clip.load(jit=True): promptlab builds the eager model (a TorchScript model cannot be opened up)")
    model = build_model(read_state_dict(path)).to(device)
    if torch.device(device).type == "cpu":
        model.float()
    return model, _transform(model.visual.input_resolution)

"""The stand-in fork's package interface: OpenAI's names, its own model builders."""
import os
from typing import List, Union

import torch

from .model import build_model, build_model_RepTok  # noqa: F401
from .simple_tokenizer import SimpleTokenizer

FORK = "forked_repo"
__all__ = ["available_models", "tokenize", "build_model", "build_model_RepTok"]

_MODELS = {
    "ViT-B/16": "https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
}
_tokenizer = SimpleTokenizer()


def _download(url: str, root: str = os.path.expanduser("~/.cache/clip")):
    raise RuntimeError(f"the stand-in fork would download {url} here")


def available_models() -> List[str]:
    return list(_MODELS)


def tokenize(texts: Union[str, List[str]], context_length: int = 77, truncate: bool = False) -> torch.LongTensor:
    if isinstance(texts, str):
        texts = [texts]
    sot, eot = _tokenizer.encoder["<|startoftext|>"], _tokenizer.encoder["<|endoftext|>"]
    result = torch.zeros(len(texts), context_length, dtype=torch.long)
    for i, text in enumerate(texts):
        tokens = [sot] + _tokenizer.encode(text) + [eot]
        if len(tokens) > context_length:
            if not truncate:
                raise RuntimeError(f"Input {text} is too long for context length {context_length}")
            tokens = tokens[:context_length - 1] + [eot]
        result[i, :len(tokens)] = torch.tensor(tokens)
    return result

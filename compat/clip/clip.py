"""clip.clip (promptlab's layer: external/openai_clip.py)."""
from external.openai_clip import _MODELS, _download, _transform, available_models, build_model, load, tokenize

__all__ = ["_MODELS", "_download", "_transform", "available_models", "build_model", "load", "tokenize"]

"""clip.model (promptlab's layer: external/openai_clip.py and backbone/openai_view.py)."""
from backbone.openai_view import OpenAICLIP as CLIP
from external.openai_clip import build_model, convert_weights

__all__ = ["CLIP", "build_model", "convert_weights"]

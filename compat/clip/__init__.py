"""promptlab's layer for OpenAI's `clip` package (external/openai_clip.py), over open_clip.

`from clip import clip` gives the module clip.clip, as in OpenAI's package; `import clip`
gives load, tokenize and available_models. On sys.path only in processes that load external
trainer files (external/loader.py).
"""
from clip.clip import available_models, load, tokenize

__all__ = ["available_models", "load", "tokenize"]

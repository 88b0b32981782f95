"""clip.simple_tokenizer (promptlab's layer: external/openai_clip.py)."""
from open_clip.tokenizer import basic_clean, bytes_to_unicode, default_bpe, get_pairs, whitespace_clean

from external.openai_clip import SimpleTokenizer

__all__ = ["SimpleTokenizer", "basic_clean", "bytes_to_unicode", "default_bpe", "get_pairs", "whitespace_clean"]

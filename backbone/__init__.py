"""Frozen CLIP backbones for prompt learning: loading, precision policy, tower hooks."""
from backbone.clip import ClipBackbone
from backbone.hooks import TowerHooks, TowerOutput, append_tokens, blend_tokens, insert_tokens, replace_tokens
from backbone.loader import COOP_ARCHS, load_clip, weights_fingerprint
from backbone.precision import autocast, grad_scaler, weight_dtype

__all__ = [
    "COOP_ARCHS",
    "ClipBackbone",
    "TowerHooks",
    "TowerOutput",
    "append_tokens",
    "autocast",
    "blend_tokens",
    "grad_scaler",
    "insert_tokens",
    "load_clip",
    "replace_tokens",
    "weight_dtype",
    "weights_fingerprint",
]

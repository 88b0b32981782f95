"""dassl.data.transforms (promptlab's layer: external/dassl_data.py)."""
from external.dassl_data import INTERPOLATION_MODES, build_transform

__all__ = ["INTERPOLATION_MODES", "build_transform"]

"""dassl.config (promptlab's layer: external/dassl_config.py)."""
from external.dassl_config import clean_cfg, get_cfg_default

__all__ = ["clean_cfg", "get_cfg_default"]

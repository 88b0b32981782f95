"""dassl.metrics (promptlab's layer: external/dassl_eval.py)."""
from external.dassl_eval import compute_accuracy

__all__ = ["compute_accuracy"]

"""dassl.optim (promptlab's layer: external/dassl_optim.py)."""
from external.dassl_optim import build_lr_scheduler, build_optimizer

__all__ = ["build_lr_scheduler", "build_optimizer"]

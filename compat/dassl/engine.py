"""dassl.engine (promptlab's layer: external/dassl_engine.py)."""
from external.dassl_engine import TRAINER_REGISTRY, TrainerX, build_trainer

__all__ = ["TRAINER_REGISTRY", "TrainerX", "build_trainer"]

"""dassl.evaluation (promptlab's layer: external/dassl_eval.py)."""
from external.dassl_eval import EVALUATOR_REGISTRY, Classification, EvaluatorBase, build_evaluator

__all__ = ["EVALUATOR_REGISTRY", "Classification", "EvaluatorBase", "build_evaluator"]

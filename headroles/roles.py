"""Roles from Concept Entropy: low -> Attribute (if the dominant concept is a core attribute,
else treated as Generalization), high -> Generalization, in between -> Mixed.

The paper does not publish its thresholds; both kinds offered work on the normalised entropy
H / log2(number of concepts): `tertiles` (the lowest third of heads is low, the highest third
high) and `absolute` (given cuts).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from headroles.rolemap import ATTRIBUTE, GENERALIZATION, MIXED

THRESHOLD_MODES = ("tertiles", "absolute")


def entropy_cuts(normalised: Sequence[float], mode: str, low: float, high: float) -> tuple[float, float]:
    """(low cut, high cut): a head is low if its normalised entropy <= low cut, high if >= high cut."""
    if mode == "tertiles":
        values = np.asarray(normalised, dtype=float)
        return float(np.quantile(values, 1 / 3)), float(np.quantile(values, 2 / 3))
    if mode == "absolute":
        if not 0 <= low <= high <= 1:
            raise ValueError(f"absolute thresholds need 0 <= low <= high <= 1, got low={low}, high={high}")
        return low, high
    raise ValueError(f"thresholds must be one of {THRESHOLD_MODES}, got {mode!r}")


def assign_role(normalised: float, dominant_label: str | None, attributes: Sequence[str],
                cuts: tuple[float, float]) -> tuple[str, str | None]:
    """(role, attribute) of one head; low-entropy heads of a non-core concept are Generalization."""
    low, high = cuts
    if normalised <= low:
        if dominant_label in attributes:
            return ATTRIBUTE, dominant_label
        return GENERALIZATION, None
    if normalised >= high:
        return GENERALIZATION, None
    return MIXED, None

"""Attribute vocabularies of the world and the per-image attribute record.

Every value is a single caption word (or fixed phrase), so a caption can be checked
against its image by word lookup and a class name is just the words of its attributes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "heart", "cross", "hexagon", "crescent")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (245, 135, 20),
    "yellow": (235, 215, 30),
    "green": (40, 160, 60),
    "cyan": (30, 190, 200),
    "blue": (40, 70, 210),
    "purple": (130, 50, 180),
    "pink": (240, 120, 190),
}
TEXTURES = ("solid", "striped", "dotted", "checkered")
SIZES = ("small", "large")
POSITIONS = ("center", "top left", "top right", "bottom left", "bottom right")

# Object radius in pixels of the 64-px image; both sizes span well over 2x2 patches of 8 px.
SIZE_RADIUS = {"small": 12.0, "large": 19.0}
IMAGE_SIZE = 64

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "color": tuple(COLORS),
    "texture": TEXTURES,
    "size": SIZES,
    "position": POSITIONS,
}


@dataclass(frozen=True)
class Attributes:
    """The semantic attributes of one image (what captions and class names talk about)."""

    shape: str
    color: str
    texture: str
    size: str
    position: str

    def __post_init__(self) -> None:
        for name, values in ATTRIBUTES.items():
            if getattr(self, name) not in values:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {values}")

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def sample_attributes(rng: np.random.Generator, **fixed: str) -> Attributes:
    """Uniform over every attribute not given in `fixed` (rng draws happen in a fixed order)."""
    unknown = set(fixed) - set(ATTRIBUTES)
    if unknown:
        raise ValueError(f"Unknown attributes {sorted(unknown)}; known: {list(ATTRIBUTES)}")
    values = {}
    for name, choices in ATTRIBUTES.items():
        drawn = choices[int(rng.integers(len(choices)))]  # drawn even when fixed: same stream either way
        values[name] = fixed.get(name, drawn)
    return Attributes(**values)

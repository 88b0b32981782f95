"""Deterministic PIL renderer: one textured object on a varied gray background.

Drawing happens at 2x and is box-downsampled, so edges are anti-aliased without any
randomness outside the given generator: the same generator state gives the same bytes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from attrworld.spec import COLORS, IMAGE_SIZE, SIZE_RADIUS, Attributes

SUPERSAMPLE = 2
MAX_ROTATION = 15.0  # degrees; small, so "triangle" keeps pointing up and squares stay squares
POSITION_JITTER = 3.0  # pixels
COLOR_JITTER = 12
NOISE_STD = 5.0
TEXTURE_PERIOD = 6.0  # pixels of the final image
SECONDARY_SHADE = 0.35  # texture marks are the object colour darkened, so the hue stays the colour's


@dataclass(frozen=True)
class Nuisance:
    """The non-semantic draws of one image, recorded beside its attributes."""

    rotation: float
    center: tuple[float, float]
    radius: float
    background: int
    rgb: tuple[int, int, int]


def _regular(n: int, radius: float, start: float = -90.0) -> list[tuple[float, float]]:
    return [
        (radius * math.cos(math.radians(start + 360 * i / n)), radius * math.sin(math.radians(start + 360 * i / n)))
        for i in range(n)
    ]


def _star() -> list[tuple[float, float]]:
    outer, inner = _regular(5, 1.0), _regular(5, 0.45, start=-90 + 36)
    return [p for pair in zip(outer, inner) for p in pair]


def _heart() -> list[tuple[float, float]]:
    pts = []
    for i in range(64):
        t = 2 * math.pi * i / 64
        x = 16 * math.sin(t) ** 3
        y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
        pts.append((x / 16.5, -(y + 2.5) / 16.5))
    return pts


def _cross() -> list[tuple[float, float]]:
    a, w = 0.95, 0.33
    return [(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w), (w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w)]


# Unit-radius outlines centred on the origin (y points down, as in image coordinates).
OUTLINES: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.82, -0.82), (0.82, -0.82), (0.82, 0.82), (-0.82, 0.82)],
    "triangle": [(x, y + 0.15) for x, y in _regular(3, 1.1)],
    "star": _star(),
    "heart": _heart(),
    "cross": _cross(),
    "hexagon": _regular(6, 0.95, start=0.0),
}


def shape_mask(shape: str, size_px: int, radius_px: float) -> Image.Image:
    """An L-mode mask of `shape` with the given radius, centred in a size_px square."""
    mask = Image.new("L", (size_px, size_px), 0)
    draw = ImageDraw.Draw(mask)
    c = size_px / 2
    r = radius_px

    def box(rr: float, dx: float = 0.0) -> list[float]:
        return [c + dx - rr, c - rr, c + dx + rr, c + rr]

    if shape == "circle":
        draw.ellipse(box(0.92 * r), fill=255)
    elif shape == "crescent":
        draw.ellipse(box(r), fill=255)
        draw.ellipse(box(0.85 * r, dx=0.5 * r), fill=0)
    else:
        draw.polygon([(c + x * r, c + y * r) for x, y in OUTLINES[shape]], fill=255)
    return mask


@lru_cache(maxsize=None)
def _grid(size_px: int) -> np.ndarray:
    """[2, size, size] float32 pixel indices (y, x), cached: rendering makes thousands."""
    return np.mgrid[0:size_px, 0:size_px].astype(np.float32)


def texture_fill(texture: str, rgb: tuple[int, int, int], size_px: int, period_px: float, angle: float) -> Image.Image:
    """The object's paint: solid colour, or colour with darker stripes/dots/checks."""
    base = np.asarray(rgb, dtype=np.float32)
    if texture == "solid":
        marks = np.zeros((size_px, size_px), dtype=bool)
    else:
        ys, xs = _grid(size_px) + 0.5
        theta = math.radians(angle)
        u = (xs * math.cos(theta) + ys * math.sin(theta)) / period_px
        v = (-xs * math.sin(theta) + ys * math.cos(theta)) / period_px
        if texture == "striped":
            marks = (np.floor(u) % 2) == 1
        elif texture == "checkered":
            marks = ((np.floor(u) + np.floor(v)) % 2) == 1
        elif texture == "dotted":
            marks = ((u % 1 - 0.5) ** 2 + (v % 1 - 0.5) ** 2) < 0.28**2
        else:
            raise ValueError(f"Unknown texture {texture!r}")
    light, dark = base.round().astype(np.uint8), (base * SECONDARY_SHADE).round().astype(np.uint8)
    return Image.fromarray(np.where(marks[..., None], dark, light), "RGB")


def _background(rng: np.random.Generator, size: int) -> tuple[Image.Image, int]:
    """A gray level with a random linear gradient: varied, but never a colour of its own."""
    level = int(rng.integers(60, 201))
    angle = rng.uniform(0, 2 * math.pi)
    amplitude = rng.uniform(0, 30)
    ys, xs = _grid(size) / size - 0.5
    ramp = (level + amplitude * (xs * math.cos(angle) + ys * math.sin(angle))).clip(0, 255).round()
    return Image.fromarray(np.repeat(ramp.astype(np.uint8)[..., None], 3, axis=2), "RGB"), level


def _center(position: str, radius: float, jitter: np.ndarray) -> tuple[float, float]:
    half = IMAGE_SIZE / 2
    offset = half - radius - POSITION_JITTER - 1
    dx = {"center": 0, "top left": -1, "top right": 1, "bottom left": -1, "bottom right": 1}[position]
    dy = {"center": 0, "top left": -1, "top right": -1, "bottom left": 1, "bottom right": 1}[position]
    return half + dx * offset + float(jitter[0]), half + dy * offset + float(jitter[1])


def render(attrs: Attributes, rng: np.random.Generator) -> tuple[Image.Image, Nuisance]:
    """Render one 64-px RGB image of `attrs`; all randomness comes from `rng`."""
    s = SUPERSAMPLE
    size = IMAGE_SIZE * s
    canvas, level = _background(rng, size)
    radius = SIZE_RADIUS[attrs.size] * rng.uniform(0.92, 1.08)
    center = _center(attrs.position, radius, rng.uniform(-POSITION_JITTER, POSITION_JITTER, size=2))
    rotation = float(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    jitter = rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, size=3)
    rgb = tuple(int(v) for v in np.clip(np.asarray(COLORS[attrs.color]) + jitter, 0, 255))
    pattern_angle = float(rng.choice([0.0, 45.0, 90.0, 135.0]))

    local = int(math.ceil(2.3 * radius * s))
    mask = shape_mask(attrs.shape, local, radius * s).rotate(rotation, resample=Image.BICUBIC)
    paint = texture_fill(attrs.texture, rgb, local, TEXTURE_PERIOD * s, pattern_angle + rotation)

    corner = (int(round(center[0] * s - local / 2)), int(round(center[1] * s - local / 2)))
    canvas.paste(paint, corner, mask)
    small = np.asarray(canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX), dtype=np.float32)
    noisy = small + rng.normal(0, NOISE_STD, size=small.shape)
    image = Image.fromarray(noisy.clip(0, 255).round().astype(np.uint8), "RGB")
    return image, Nuisance(rotation=round(rotation, 3), center=(round(center[0], 3), round(center[1], 3)),
                           radius=round(radius, 3), background=level, rgb=rgb)


def shift_hue(image: Image.Image, degrees: float) -> Image.Image:
    """The image as a camera with a colour cast would see it: every hue turned by `degrees`.

    Deterministic (PIL's 8-bit HSV, hue steps of 360/256 degrees); 0 returns the same pixels.
    """
    if not degrees:
        return image
    hsv = np.asarray(image.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + round(degrees * 256 / 360)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")

"""Reading an image file as the 8-bit RGB picture CLIP's transforms expect, whatever its mode.

PIL's `convert("RGB")` (what Dassl and OpenAI's preprocessing call) is right for the usual modes
but silently wrong for three kinds of file found in real datasets:
  - 16-bit grey (`I;16*`, e.g. 16-bit PNG and TIFF) and 32-bit integer (`I`) images are clipped
    at 255, so almost every pixel turns white; here they are scaled from 0-65535 to 0-255;
  - 32-bit float (`F`) images are taken as 0-255 values, so the 0-1 floats such files hold turn
    black; here 0-1 is scaled to 0-255;
  - transparent pixels (LA, PA, RGBA, palette or colour-key transparency) keep whatever colour
    hides under alpha 0; here every image with alpha is composited on `ALPHA_BACKGROUND`.
Values a mode cannot hold in that range (negative, above 65535, floats outside 0-1, NaN) are an
error naming the file: no scaling could be right for every such file. CMYK and YCbCr go through
PIL's conversion (JPEG's Adobe-inverted CMYK is handled by the decoder); EXIF orientation is not
applied, as in CoOp's and OpenAI's pipelines, so the pixels are those the official code sees.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, UnidentifiedImageError

from engine.errors import DataError

ALPHA_BACKGROUND = (255, 255, 255)  # white, as transparent product shots and icons are meant to be seen
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
_UINT16_MAX = 65535


def read_image(path: str) -> Image.Image:
    """Open as 8-bit RGB (`to_rgb`); a corrupt, unreadable or unconvertible file raises a
    DataError naming it (Dassl retried forever)."""
    try:
        with Image.open(path) as img:
            return to_rgb(img)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        raise DataError(f"Cannot read image {path}: {e}. Replace the file or remove it from the split.") from e


def to_rgb(img: Image.Image) -> Image.Image:
    """The image as 8-bit RGB, high bit depths scaled and alpha composited (module docstring)."""
    mode = img.mode
    if mode.startswith("I;16") or mode == "I":
        return _grey(_scaled_uint16(np.asarray(img), mode))
    if mode == "F":
        return _grey(_scaled_unit_float(np.asarray(img, dtype=np.float64)))
    if mode in _ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _grey(values: np.ndarray) -> Image.Image:
    return Image.fromarray(values.astype(np.uint8)).convert("RGB")  # 2-D uint8: mode L


def _scaled_uint16(values: np.ndarray, mode: str) -> np.ndarray:
    low, high = int(values.min(initial=0)), int(values.max(initial=0))
    if low < 0 or high > _UINT16_MAX:
        raise ValueError(f"mode {mode} values span {low}..{high}, outside the 16-bit range 0..{_UINT16_MAX} this "
                         "toolbox scales to 8 bits; save it as 8- or 16-bit")
    return np.rint(values.astype(np.float64) * (255 / _UINT16_MAX))


def _scaled_unit_float(values: np.ndarray) -> np.ndarray:
    if not np.isfinite(values).all() or values.min(initial=0.0) < 0 or values.max(initial=0.0) > 1:
        raise ValueError(f"mode F (32-bit float) values span {np.nanmin(values):g}..{np.nanmax(values):g}; floats are "
                         "read as 0..1 (NaN and values outside it cannot be mapped); save it as 8- or 16-bit")
    return np.rint(values * 255)

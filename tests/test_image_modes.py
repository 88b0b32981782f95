"""engine/data/images.py: every PIL mode a dataset can hold reaches the transforms as the right
8-bit RGB picture, from real files of each kind (16-bit PNG, float TIFF, CMYK JPEG, palettes...)."""
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.data.images import ALPHA_BACKGROUND, read_image, to_rgb
from engine.errors import DataError
from tests.replica import load_tool

WHITE = ALPHA_BACKGROUND


def rgb(path_or_image) -> np.ndarray:
    img = read_image(str(path_or_image)) if isinstance(path_or_image, Path) else to_rgb(path_or_image)
    assert img.mode == "RGB"
    return np.asarray(img).astype(int)


def png16(path: Path, values: np.ndarray, color_type: int) -> Path:
    """A 16-bit PNG written byte by byte (PIL cannot write 16-bit colour): 0 grey, 2 RGB, 4 grey+alpha."""
    height, width = values.shape[:2]
    raw = b"".join(b"\0" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))
    return path


def test_16_bit_grey_png_is_scaled_not_clipped(tmp_path):
    """The issue's case: PIL opens it as I;16 and convert("RGB") clips at 255 (all but black turns white)."""
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    path = png16(tmp_path / "scan.png", values, color_type=0)
    assert Image.open(path).mode == "I;16"
    assert rgb(path)[0, :, 0].tolist() == [0, 1, 128, 255] and (rgb(path)[..., 0] == rgb(path)[..., 2]).all()
    assert np.asarray(Image.open(path).convert("RGB"))[0, :, 0].tolist() == [0, 255, 255, 255]  # what PIL gives


def test_16_bit_colour_pngs_keep_their_colours(tmp_path):
    rgb16 = np.array([[[65535, 32896, 771]]], dtype=np.uint16)
    assert rgb(png16(tmp_path / "c.png", rgb16, color_type=2)).tolist() == [[[255, 128, 3]]]
    grey_alpha = np.array([[[30000, 65535], [30000, 0]]], dtype=np.uint16)
    assert rgb(png16(tmp_path / "la.png", grey_alpha, color_type=4)).tolist() == [[[117] * 3, list(WHITE)]]


def test_16_bit_tiff_and_32_bit_integer_images(tmp_path):
    big_endian = Image.frombytes("I;16B", (2, 1), np.array([0, 65535], dtype=">u2").tobytes())
    assert rgb(big_endian)[0, :, 1].tolist() == [0, 255]
    path = tmp_path / "depth.tif"
    Image.fromarray(np.array([[0, 1000, 65535]], dtype=np.int32)).save(path)
    assert Image.open(path).mode == "I" and rgb(path)[0, :, 0].tolist() == [0, 4, 255]
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(path)
    with pytest.raises(DataError, match=rf"Cannot read image {path}: mode I values span 0\.\.70000, outside the "
                                        r"16-bit range"):
        read_image(str(path))


def test_float_images_are_read_as_0_to_1(tmp_path):
    path = tmp_path / "f.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(path)
    assert Image.open(path).mode == "F" and rgb(path)[0, :, 0].tolist() == [0, 128, 255]
    Image.fromarray(np.array([[0.0, 2.0]], dtype=np.float32)).save(path)
    with pytest.raises(DataError, match=r"mode F \(32-bit float\) values span 0\.\.2; floats are read as 0\.\.1"):
        read_image(str(path))


@pytest.mark.parametrize("mode, pixels, expected", [
    ("1", [[0, 1]], [[[0] * 3, [255] * 3]]),
    ("L", [[0, 77, 255]], [[[0] * 3, [77] * 3, [255] * 3]]),
    ("RGB", [[[10, 20, 30]]], [[[10, 20, 30]]]),
    ("CMYK", [[[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255]]], [[list(WHITE), [0, 255, 255], [0, 0, 0]]]),
    ("RGBA", [[[200, 10, 10, 0], [200, 10, 10, 255]]], [[list(WHITE), [200, 10, 10]]]),
    ("LA", [[[40, 0], [40, 255]]], [[list(WHITE), [40] * 3]]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_each_mode_to_rgb(mode, pixels, expected):
    array = np.array(pixels, dtype=np.uint8)
    size = array.shape[1::-1]
    img = Image.fromarray(array.astype(bool)) if mode == "1" else Image.frombytes(mode, size, array.tobytes())
    assert img.mode == mode
    assert rgb(img).tolist() == expected


def test_half_transparent_pixels_blend_with_the_background():
    img = Image.frombytes("RGBA", (1, 1), bytes([0, 0, 0, 128]))
    assert abs(rgb(img)[0, 0, 0] - 127) <= 1


def test_palettes_with_and_without_transparency(tmp_path):
    palette = [255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6)  # index 0 red, index 1 blue
    img = Image.frombytes("P", (2, 1), bytes([0, 1]))
    img.putpalette(palette)
    plain = tmp_path / "p.png"
    img.save(plain)
    assert rgb(plain).tolist() == [[[255, 0, 0], [0, 0, 255]]]
    keyed = tmp_path / "p_transparent.png"
    img.save(keyed, transparency=1)  # a palette index marked transparent (GIF- and PNG-style)
    assert Image.open(keyed).mode == "P" and rgb(keyed).tolist() == [[[255, 0, 0], list(WHITE)]]
    pa = Image.open(keyed).convert("PA")
    assert pa.mode == "PA" and rgb(pa).tolist() == [[[255, 0, 0], list(WHITE)]]


def test_cmyk_jpeg_from_disk(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(path, quality=100)
    assert Image.open(path).mode == "CMYK" and (abs(rgb(path) - 255) <= 1).all()


def test_verify_data_reports_what_training_cannot_read(tmp_path):
    ok = png16(tmp_path / "ok.png", np.array([[1, 65535]], dtype=np.uint16), color_type=0)
    bad = tmp_path / "bad.tif"
    Image.fromarray(np.array([[-1.0, 0.5]], dtype=np.float32)).save(bad)
    found = load_tool("verify_data").unreadable_images([str(ok), str(bad)], jobs=1)
    assert [(p, r.split(";")[0]) for p, r in found] == [(str(bad), "mode F (32-bit float) values span -1..0.5")]

"""images.py: decoding PNG/JPEG to model arrays, the pixel cap before decoding, PNG encoding and grids."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.images import decode_image, encode_png, grid, sniff
from service.manifest import ImageSpec

GRAY28 = ImageSpec(channels=1, height=28, width=28)
RGB8 = ImageSpec(channels=3, height=8, width=8)


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_png_round_trip_is_exact_for_a_model_sized_gray_image():
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    array = decode_image(png_bytes(pixels), GRAY28, max_pixels=10_000)
    assert array.shape == (1, 28, 28) and array.dtype == np.float32
    np.testing.assert_allclose(array[0], pixels / 255.0, atol=1e-7)
    again = decode_image(encode_png(array), GRAY28, max_pixels=10_000)
    np.testing.assert_array_equal(again, array)


def test_jpeg_is_decoded_and_close_to_the_original():
    pixels = np.full((28, 28), 200, np.uint8)
    array = decode_image(jpeg_bytes(pixels), GRAY28, max_pixels=10_000)
    assert abs(float(array.mean()) - 200 / 255) < 0.02


def test_colour_input_becomes_the_models_gray_and_size():
    rgb = np.zeros((56, 84, 3), np.uint8)
    rgb[..., 0] = 255  # pure red: luminance 0.299
    array = decode_image(png_bytes(rgb), GRAY28, max_pixels=10_000)
    assert array.shape == (1, 28, 28)
    assert abs(float(array.mean()) - 0.299) < 0.01


def test_gray_input_becomes_rgb_for_a_three_channel_model():
    array = decode_image(png_bytes(np.full((8, 8), 255, np.uint8)), RGB8, max_pixels=100)
    assert array.shape == (3, 8, 8)
    np.testing.assert_allclose(array, 1.0)


def test_transparency_is_flattened_onto_black():
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere, but only the left half is opaque
    rgba[:, :14, 3] = 255
    array = decode_image(png_bytes(rgba), GRAY28, max_pixels=10_000)
    assert array[0, :, :14].min() == 1.0 and array[0, :, 14:].max() == 0.0


def test_sixteen_bit_png_is_scaled_not_clipped():
    pixels = np.full((28, 28), 32768, np.uint16)
    array = decode_image(png_bytes(pixels), GRAY28, max_pixels=10_000)
    assert abs(float(array.mean()) - 0.5) < 0.01


def _bomb_png(width: int, height: int) -> bytes:
    # A valid PNG header for a huge 1-bit image with a tiny (never decompressed) IDAT: a decompression bomb.
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [1_000, 100_000])
def test_pixel_cap_is_checked_on_the_header_before_decoding(side):
    bomb = _bomb_png(side, side)
    assert len(bomb) < 200  # small on the wire, huge once decoded
    with pytest.raises(PayloadTooLarge, match="VAE_MAX_PIXELS"):
        decode_image(bomb, GRAY28, max_pixels=500_000)


def test_image_just_under_the_cap_is_accepted():
    array = decode_image(png_bytes(np.zeros((100, 100), np.uint8)), GRAY28, max_pixels=10_000)
    assert array.shape == (1, 28, 28)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"GIF89a\x01\x00\x01\x00", UnsupportedMediaType, "GIF"),
        (b"BM" + b"\0" * 60, UnsupportedMediaType, "BMP"),
        (b"hello world", UnsupportedMediaType, "PNG or JPEG"),
        (b"", UnsupportedMediaType, "empty"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, InvalidInput, "readable PNG|corrupt"),
    ],
)
def test_unsupported_or_corrupt_bytes_are_refused_with_a_clear_error(data, error, message):
    with pytest.raises(error, match=message):
        decode_image(data, GRAY28, max_pixels=10_000, what="file 'x'")


def test_truncated_png_is_invalid_input_not_a_crash():
    data = png_bytes(np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8))
    with pytest.raises(InvalidInput):
        decode_image(data[: len(data) // 2], GRAY28, max_pixels=10_000)


def test_sniff_names_the_format():
    assert sniff(png_bytes(np.zeros((2, 2), np.uint8))) == "PNG"
    assert sniff(jpeg_bytes(np.zeros((8, 8), np.uint8))) == "JPEG"


def test_encode_png_writes_gray_or_rgb():
    gray = Image.open(io.BytesIO(encode_png(np.zeros((1, 5, 7), np.float32))))
    rgb = Image.open(io.BytesIO(encode_png(np.ones((3, 5, 7), np.float32))))
    assert (gray.mode, gray.size) == ("L", (7, 5))
    assert (rgb.mode, rgb.size) == ("RGB", (7, 5))


def test_grid_places_images_row_major_with_padding():
    images = np.stack([np.full((1, 4, 4), v, np.float32) for v in (0.0, 0.25, 0.75, 1.0, 0.5)])
    out = grid(images, padding=2, pad_value=0.5)
    assert out.shape == (1, 2 + 2 * 6, 2 + 3 * 6)  # 5 images -> 3 columns x 2 rows
    assert out[0, 2, 2] == 0.0 and out[0, 2, 8] == 0.25 and out[0, 8, 2] == 1.0
    assert grid(images, columns=5).shape == (1, 8, 32)

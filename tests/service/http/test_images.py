"""images.py: decoding PNG/JPEG to model arrays, the pixel cap before decoding, PNG encoding and grids."""

import io
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.http.images import (
    decode_image,
    decode_model_sized_png,
    decode_model_sized_pngs,
    encode_png,
    grid,
    open_image,
    png_pixel_chunks,
    sniff,
)
from vaeformat.manifest import ImageSpec

from ..payloads import bad_exif_jpeg, png_chunk, ztxt_bomb_png

GRAY28 = ImageSpec(channels=1, height=28, width=28)
RGB8 = ImageSpec(channels=3, height=8, width=8)


def png_bytes(array: np.ndarray, mode: str | None = None, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG", **options)
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


@pytest.mark.parametrize(
    ("pixels", "key"),
    [
        (np.full((28, 28), 255, np.uint8), 255),  # grey: the grey model's own mode, yet not used as it is
        (np.full((28, 28, 3), 255, np.uint8), (255, 255, 255)),
        (np.full((28, 28), 65535, np.uint16), 65535),
    ],
    ids=["grey", "rgb", "16-bit"],
)
def test_a_colour_key_is_transparency_flattened_onto_black(pixels, key):
    """PNG's tRNS chunk without an alpha channel: pixels of the key's value are transparent."""
    pixels[:, :14] = pixels[:, :14] // 2  # the left half is not the key: it stays
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", transparency=key)
    array = decode_image(buffer.getvalue(), GRAY28, max_pixels=10_000)
    assert array[0, :, :14].min() > 0.4 and array[0, :, 14:].max() == 0.0


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
        (b"", InvalidInput, r"empty \(0 bytes\)"),
        (b"\x89PNG\r\n\x1a\n" + b"garbage" * 10, InvalidInput, "readable PNG|corrupt|first chunk is not its header"),
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


def test_png_text_chunks_are_never_decompressed():
    bomb = ztxt_bomb_png(chunks=60)  # 64 KB on the wire, 60 MiB of text once inflated
    assert len(bomb) < 100_000
    tracemalloc.start()
    try:
        started = time.perf_counter()
        image = open_image(bomb, max_pixels=10_000)
        array = decode_image(bomb, GRAY28, max_pixels=10_000)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert image.info == {} and array.shape == (1, 28, 28)
    assert peak < 2 * 1024 * 1024 and elapsed < 0.2, (peak, elapsed)


def test_only_the_chunks_that_decide_pixels_and_orientation_are_kept():
    palette = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8) % 4)
    palette.putpalette([255, 255, 255] * 256)  # every index white...
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", transparency=0)  # ...but index 0 transparent (a tRNS chunk)
    data = buffer.getvalue()
    text = png_chunk(b"tEXt", b"Comment\0hello") + png_chunk(b"iCCP", b"p\0\0" + zlib.compress(b"x" * 1000))
    with_text = data[:33] + text + data[33:]
    kinds = _chunk_kinds(png_pixel_chunks(with_text))
    assert b"tEXt" not in kinds and b"iCCP" not in kinds and {b"IHDR", b"tRNS", b"IDAT", b"IEND"} <= set(kinds)
    array = decode_image(with_text, ImageSpec(channels=1, height=8, width=8), max_pixels=10_000)
    assert array[0, 0, 0] == 0.0 and array.max() == 1.0  # the transparent pixels are black: tRNS was kept


def test_a_png_cut_inside_a_chunk_is_still_refused_as_invalid():
    data = ztxt_bomb_png(chunks=2)
    for cut in (40, 60, len(data) - 30):
        with pytest.raises(InvalidInput, match="file 'cut.png'"):
            decode_image(data[:cut], GRAY28, max_pixels=10_000, what="file 'cut.png'")


def _rotated_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the stored pixels must be turned 90 degrees clockwise to display
    return exif


def test_exif_orientation_is_applied_for_a_jpeg_and_for_a_png_whose_exif_follows_the_pixels():
    stored = np.zeros((8, 8), np.uint8)
    stored[0, :] = 255  # a white top row; displayed after a 90-degree clockwise turn it is the right column
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="JPEG", quality=100, exif=_rotated_exif())
    shown = decode_image(buffer.getvalue(), ImageSpec(channels=1, height=8, width=8), max_pixels=10_000)[0]
    assert shown[:, -1].mean() > 0.9 and shown[0, :-2].mean() < 0.1
    plain = png_bytes(stored)
    after_pixels = plain[:-12] + png_chunk(b"eXIf", _rotated_exif().tobytes()) + plain[-12:]  # before IEND
    shown = decode_image(after_pixels, ImageSpec(channels=1, height=8, width=8), max_pixels=10_000)[0]
    assert np.array_equal(shown, np.rot90(stored, -1) / np.float32(255.0))
    unrotated = decode_image(plain, ImageSpec(channels=1, height=8, width=8), max_pixels=10_000)[0]
    assert np.array_equal(unrotated, stored / np.float32(255.0))


def test_malformed_exif_is_invalid_input_naming_the_part():
    with pytest.raises(InvalidInput, match="file 'phone.jpg' could not be decoded"):
        decode_image(bad_exif_jpeg(), GRAY28, max_pixels=10_000, what="file 'phone.jpg'")


def _chunk_kinds(data: bytes) -> list[bytes]:
    kinds, position = [], 8
    while position + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        kinds.append(data[position + 4 : position + 8])
        position += 12 + length
    return kinds


@pytest.mark.parametrize(
    "padding",
    [b"\xff\xe0\x00\x02" * 100_000, b"\xff" * 400_000, b"\xff\xfe\x00\x02" + b"junk" * 100_000, b"\xff\xd9" * 200_000],
    ids=["empty segments", "fill bytes", "junk", "end markers"],
)
def test_jpeg_headers_that_would_take_pillow_seconds_are_refused_at_once(padding):
    data = jpeg_bytes(np.zeros((8, 8), np.uint8))
    started = time.perf_counter()
    with pytest.raises(InvalidInput, match="file 'x.jpg' is a JPEG with more than 4096 segments"):
        decode_image(data[:2] + padding + data[2:], GRAY28, max_pixels=10_000, what="file 'x.jpg'")
    assert time.perf_counter() - started < 0.1


def test_a_progressive_jpeg_decodes_but_one_of_a_thousand_repeated_scans_is_refused_at_once():
    pixels = np.random.default_rng(3).integers(0, 256, (28, 28), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", progressive=True, quality=90)
    progressive = buffer.getvalue()
    assert 1 < progressive.count(b"\xff\xda") <= 16  # a real progressive file: several scans
    assert decode_image(progressive, GRAY28, max_pixels=10_000).shape == (1, 28, 28)
    last_scan = progressive.rindex(b"\xff\xda")
    bomb = progressive[:last_scan] + progressive[last_scan:-2] * 1000 + b"\xff\xd9"
    started = time.perf_counter()
    with pytest.raises(InvalidInput, match="file 'x.jpg' is a JPEG of 10.. scans; at most 64"):
        decode_image(bomb, GRAY28, max_pixels=10_000, what="file 'x.jpg'")
    assert time.perf_counter() - started < 0.1


def test_png_of_too_many_chunks_is_refused_but_small_idat_chunks_are_fine():
    data = png_bytes(np.random.default_rng(2).integers(0, 256, (200, 200), dtype=np.uint8))
    empty = data[:33] + png_chunk(b"tEXt", b"") * 100_000 + data[33:]
    with pytest.raises(InvalidInput, match="file 'x.png' is a PNG of more than"):
        decode_image(empty, GRAY28, max_pixels=100_000, what="file 'x.png'")
    kinds = _chunk_kinds(data)
    assert kinds == [b"IHDR", b"IDAT", b"IEND"]
    (length,) = struct.unpack_from(">I", data, 33)
    pixels = data[41 : 41 + length]
    small = b"".join(png_chunk(b"IDAT", pixels[i : i + 256]) for i in range(0, length, 256))  # 268 bytes a chunk
    resplit = data[:33] + small + data[33 + 12 + length :]
    np.testing.assert_array_equal(
        decode_image(resplit, GRAY28, max_pixels=100_000), decode_image(data, GRAY28, max_pixels=100_000)
    )


@pytest.mark.parametrize("options", [{}, {"optimize": True}, {"compress_level": 0}, {"compress_level": 9}])
def test_a_model_sized_png_decodes_directly_to_the_same_pixels_as_pillow(options):
    rng = np.random.default_rng(3)
    gray = (rng.random((28, 28)) ** 3 * 255).astype(np.uint8)  # mostly dark, like a digit: every PNG filter type
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    for pixels, spec in ((gray, GRAY28), (rgb, RGB8)):
        data = png_bytes(pixels, **options)
        direct = decode_model_sized_png(data, spec)
        assert direct is not None and direct.dtype == np.float32
        assert np.array_equal(direct, decode_image(data, spec, max_pixels=10_000))  # the full path: Pillow's
    with_text = png_bytes(gray)[:33] + png_chunk(b"tEXt", b"Comment\0hello") + png_bytes(gray)[33:]
    assert np.array_equal(decode_model_sized_png(with_text, GRAY28), decode_image(with_text, GRAY28, 10_000))


def test_many_model_sized_pngs_decode_together_to_each_ones_pixels():
    rng = np.random.default_rng(5)
    files = [png_bytes((rng.random((28, 28)) ** 3 * 255).astype(np.uint8), compress_level=level) for level in range(9)]
    damaged = files[3][:45] + bytes(10) + files[3][55:]
    batch = [*files[:3], damaged, png_bytes(np.zeros((27, 28), np.uint8)), *files[4:]]
    decoded = decode_model_sized_pngs(batch, GRAY28)
    assert decoded[3] is None and decoded[4] is None  # damaged; another size: the full path, one by one
    for data, image in zip(batch, decoded, strict=True):
        if image is not None:
            assert np.array_equal(image, decode_image(data, GRAY28, max_pixels=10_000))
    rgb = [png_bytes(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(3)]
    for data, image in zip(rgb, decode_model_sized_pngs(rgb, RGB8), strict=True):
        assert image is not None and np.array_equal(image, decode_image(data, RGB8, max_pixels=10_000))


def test_a_png_whose_pixel_data_would_inflate_past_the_image_is_not_decoded_directly():
    plain = png_bytes(np.zeros((28, 28), np.uint8))
    bomb = zlib.compress(bytes(29 * 28 + 10_000_000), 9)  # 10 MB more than 28 rows of 29 bytes, in ~10 KB
    data = plain[:33] + png_chunk(b"IDAT", bomb) + png_chunk(b"IEND", b"")
    tracemalloc.start()
    assert decode_model_sized_pngs([data], GRAY28) == [None]
    assert tracemalloc.get_traced_memory()[1] < 1_000_000  # never inflated beyond the image's rows
    tracemalloc.stop()


def test_anything_but_a_plain_model_sized_png_takes_pillows_full_path():
    gray = np.random.default_rng(4).integers(0, 256, (28, 28), dtype=np.uint8)
    plain = png_bytes(gray)
    transparent = plain[:33] + png_chunk(b"tRNS", b"\0\0") + plain[33:]
    others = {
        "another size": png_bytes(gray[:27]),
        "RGB for a grey model": png_bytes(np.stack([gray] * 3, axis=-1)),
        "16-bit": png_bytes(gray.astype(np.uint16) * 257),
        "interlaced": plain[:28] + b"\x01" + plain[29:],  # IHDR's interlace byte (its CRC then fails in Pillow)
        "transparency": transparent,
        "cut short": plain[:-20],
        "corrupt pixels": plain[:45] + bytes(10) + plain[55:],
        "a JPEG": jpeg_bytes(gray),
    }
    for name, data in others.items():
        assert decode_model_sized_png(data, GRAY28) is None, name
    assert decode_image(transparent, GRAY28, max_pixels=10_000).shape == (1, 28, 28)


@pytest.mark.parametrize("channels, size", [(1, 28), (3, 8), (1, 64), (3, 65), (1, 300)])  # written here / by Pillow
@pytest.mark.parametrize("scale", [1, 3])
def test_encoded_pngs_hold_the_exact_8_bit_pixels_at_any_size_and_scale(channels, size, scale):
    rng = np.random.default_rng(size)
    image = rng.random((channels, size, size + 1)).astype(np.float32)
    image[0, 0, :4] = [np.nan, np.inf, -np.inf, 1.7]  # NaN and below 0 -> black, above 1 -> white
    picture = Image.open(io.BytesIO(encode_png(image, scale)))
    picture.load()  # Pillow checks every chunk's CRC and the zlib stream as it reads
    expected = np.floor(np.nan_to_num(image, posinf=1.0, neginf=0.0).clip(0, 1) * 255 + 0.5).astype(np.uint8)
    expected = expected.repeat(scale, axis=1).repeat(scale, axis=2)
    assert picture.mode == ("L" if channels == 1 else "RGB") and picture.size == ((size + 1) * scale, size * scale)
    got = np.asarray(picture)
    assert np.array_equal(got if channels == 3 else got[..., None], expected.transpose(1, 2, 0))


def raw_png(array: np.ndarray, interlace: bool = False, keep: float = 1.0) -> bytes:
    """An 8-bit grey PNG written by hand (Pillow writes no interlaced PNG): Adam7 passes when `interlace`, and a
    complete zlib stream of only the first `keep` of its filtered rows (a stream cut mid-row Pillow refuses)."""
    height, width = array.shape
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    parts = [array[y0::dy, x0::dx] for x0, y0, dx, dy in (passes if interlace else ((0, 0, 1, 1),))]
    rows = [b"\0" + row.tobytes() for part in parts if part.size for row in part]
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, int(interlace))
    idat = zlib.compress(b"".join(rows[: int(len(rows) * keep)]))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("size", [28, 40])  # the model's own size (the fast path first) and another
def test_a_png_whose_image_data_ends_early_is_refused_not_filled_with_black(interlace, size):
    array = np.zeros((size, size), np.uint8)
    array[: size // 3] = 200  # the rest black, as a digit's background: only counting tells
    intact = raw_png(array, interlace)
    pillows = png_bytes(array)
    np.testing.assert_array_equal(decode_image(intact, GRAY28, 10_000), decode_image(pillows, GRAY28, 10_000))
    with pytest.raises(InvalidInput, match=r"image data ends after \d+ of the \d+ bytes its header declares"):
        decode_image(raw_png(array, interlace, keep=0.6), GRAY28, max_pixels=10_000)


def test_a_png_whose_header_is_not_its_first_chunk_is_refused_before_any_pixel():
    """Pillow takes an IHDR further on; the checks that read the header where the format puts it must not read
    another chunk's bytes as the image's size."""
    plain = raw_png(np.zeros((28, 28), np.uint8))
    decoy = png_chunk(b"teXx", struct.pack(">IIBBBBB", 100_000_000, 1, 8, 0, 0, 0, 0))
    with pytest.raises(InvalidInput, match=r"first chunk is not its header \(IHDR\)"):
        decode_image(plain[:8] + decoy + plain[8:], GRAY28, max_pixels=10_000)

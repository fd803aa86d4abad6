"""Image bytes <-> model arrays: decode PNG/JPEG safely, convert to the model's channels and size, encode PNGs.

Arrays are float32 [C, H, W] (one image) or [N, C, H, W], values in [0, 1].
"""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib

import numpy as np
from PIL import Image, UnidentifiedImageError

from vaeformat.images import to_mode, upright
from vaeformat.manifest import ImageSpec

from ..errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}
_OTHER_SIGNATURES = {b"GIF8": "GIF", b"BM": "BMP", b"II*\x00": "TIFF", b"MM\x00*": "TIFF", b"RIFF": "WebP/RIFF"}
# The PNG chunks that decide the pixels (header, palette, transparency, data, end) and their orientation (eXIf,
# raw bytes). Text (tEXt, zTXt, iTXt), colour profiles (iCCP) and the rest are never needed, and the compressed
# ones would be inflated by Pillow as it opens the file: 60 zTXt chunks of 1 KiB become 60 MiB of text.
_PNG_CHUNKS_KEPT = frozenset({b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND", b"eXIf"})
# Pillow walks a PNG's chunks, and a JPEG's segments and padding bytes before the image data, one Python step at a
# time: 4 MB of empty JPEG segments took 5 s, of empty IDAT chunks 1.5 s. Real files need a few dozen steps (and
# a PNG one IDAT chunk per 8 to 64 KiB), so files needing far more are refused before Pillow sees them.
MAX_JPEG_HEADER_STEPS = 4096
_JPEG_NO_LENGTH = frozenset({0x00, 0x01, *range(0xD0, 0xDA)})  # no length field: stuffed 00, TEM, RSTn, SOI, EOI
# A progressive JPEG's scans each pass over the whole image again, so its decoding time grows with their count,
# which the pixel cap does not bound: a 44 KB file of thousands of scans took seconds. Encoders write up to about
# a dozen (libjpeg's progressive script has 10; a thumbnail in the EXIF data adds its own). An entropy-coded
# byte 0xFF is always followed by 00 or a restart marker, so every FF DA in the file starts a scan.
MAX_JPEG_SCANS = 64


def _max_png_chunks(size: int) -> int:
    return 4096 + size // 256


def sniff(data: bytes, what: str = "image") -> str:
    """'PNG' or 'JPEG' from the file signature; InvalidInput (422) for no bytes at all, UnsupportedMediaType (415)
    for anything else."""
    if not data:
        raise InvalidInput(f"{what} is empty (0 bytes); send a PNG or JPEG image")
    for signature, name in _SIGNATURES.items():
        if data.startswith(signature):
            return name
    other = next((n for s, n in _OTHER_SIGNATURES.items() if data.startswith(s)), None)
    got = f"a {other} file" if other else f"bytes starting {data[:8]!r}"
    raise UnsupportedMediaType(f"{what} is {got}; send a PNG or JPEG image")


def png_pixel_chunks(data: bytes, what: str = "image") -> bytes:
    """A PNG file with only the chunks in `_PNG_CHUNKS_KEPT`, copied unread (their CRCs stay valid); its header
    (IHDR) must come first, as the format requires (Pillow would also take one further on)."""
    if data[12:16] != b"IHDR":
        raise InvalidInput(f"{what} is a PNG whose first chunk is not its header (IHDR); send an intact PNG file")
    kept = [data[:8]]
    position, chunks, limit = 8, 0, _max_png_chunks(len(data))
    while position + 8 <= len(data):
        chunks += 1
        if chunks > limit:
            raise InvalidInput(
                f"{what} is a PNG of more than {limit} chunks; real files of {len(data)} bytes have far fewer: "
                "save it again with an ordinary encoder"
            )
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4 : position + 8]
        end = position + 12 + length  # length, type, data, CRC
        if kind in _PNG_CHUNKS_KEPT:
            kept.append(data[position:end])  # a chunk cut short is kept as it is, for Pillow to refuse
        if kind == b"IEND":
            break
        position = end
    else:
        kept.append(data[position:])  # a partial chunk header at the end: Pillow reports the truncation
    return b"".join(kept)


def jpeg_header_steps(data: bytes) -> int:
    """The steps Pillow's JPEG header loop takes before the image data (one per segment, padding or junk byte),
    counted up to MAX_JPEG_HEADER_STEPS + 1."""
    position, steps = 2, 0  # after the start-of-image marker
    while position + 1 < len(data) and steps <= MAX_JPEG_HEADER_STEPS:
        steps += 1
        marker = data[position + 1]
        if data[position] != 0xFF or marker == 0xFF:  # junk or padding: Pillow moves on one byte at a time
            position += 1
        elif marker == 0xDA:  # start of scan: the compressed pixels follow, read by libjpeg in C
            break
        elif marker in _JPEG_NO_LENGTH:
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return steps


# Besides IDAT and IEND, the chunks a model-sized PNG may carry and still be decoded directly: its header, and
# ancillary ones that Pillow reads into `info` but that never change the pixels (text, gamma, colour space,
# resolution, time).
_DIRECT_PNG_PASSED = frozenset(
    {b"IHDR", b"tEXt", b"zTXt", b"iTXt", b"gAMA", b"sRGB", b"iCCP", b"cHRM", b"pHYs", b"tIME", b"bKGD", b"sBIT"}
)
_DIRECT_PNG_MODES = {(1, 0), (3, 2)}  # (model channels, PNG colour type): grey for grey, RGB for RGB


def _png_header(data: bytes) -> tuple[int, int, int, int, int]:
    """(width, height, bit depth, colour type, interlace) from the IHDR chunk of a PNG, which comes first."""
    width, height, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    return width, height, depth, colour, interlace


def is_model_sized_png(data: bytes, spec: ImageSpec) -> bool:
    """Whether the PNG header says: 8-bit, not interlaced, grey (or RGB for an RGB model), the model's own size."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or len(data) < 33 or data[12:16] != b"IHDR":
        return False
    width, height, depth, colour, interlace = _png_header(data)
    model_sized = (width, height) == (spec.width, spec.height) and depth == 8 and not interlace
    return model_sized and (spec.channels, colour) in _DIRECT_PNG_MODES


def _pixel_data(data: bytes, spec: ImageSpec) -> bytes | None:
    """A model-sized PNG's filtered rows (its IDAT data inflated, no more than the rows can hold); None for a file
    that is not one, or whose chunks or data need Pillow's full path (transparency, a palette, orientation...)."""
    if not is_model_sized_png(data, spec):
        return None
    compressed, position, limit = [], 8, _max_png_chunks(len(data))
    for _ in range(limit):
        if position + 12 > len(data):
            return None  # cut short: Pillow says how
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4 : position + 8]
        if kind == b"IDAT":
            compressed.append(data[position + 8 : position + 8 + length])
        elif kind == b"IEND":
            break
        elif kind not in _DIRECT_PNG_PASSED:
            return None
        position += 12 + length
    else:
        return None
    size = spec.height * (1 + spec.width * spec.channels)  # a filter byte, then the row
    inflate = zlib.decompressobj()
    try:
        rows = inflate.decompress(b"".join(compressed), size + 1)  # never more than the rows: no bomb can expand
    except zlib.error:
        return None
    return rows if len(rows) == size and inflate.eof else None


def decode_model_sized_pngs(files: list[bytes], spec: ImageSpec) -> list[np.ndarray | None]:
    """The common uploads, many at once, without Pillow's file machinery: 8-bit, non-interlaced grey (or RGB, for
    an RGB model) PNGs of exactly the model's size, each float32 [C, H, W]; None for a file that is not one (or is
    damaged), which `open_image`/`to_array` decode (and report).

    Pillow's PNG opener walks the chunks and builds an image object in Python: 40 us of a 28x28 digit's 45, more
    than the decoding itself. Here each file's rows are inflated by zlib, and all of them are stacked into one tall
    image (a row of zeros before each, which is what PNG's filters see above a first row) that Pillow's own PNG
    decoder ("zip", the one its PNG plugin uses) unfilters in one call: the same pixels, about 4 us a digit.
    """
    rows = [_pixel_data(data, spec) for data in files]
    direct = [r for r in rows if r is not None]
    decoded: list[np.ndarray | None] = [None] * len(files)
    if not direct:
        return decoded
    blank = bytes(1 + spec.width * spec.channels)
    stacked = b"".join(blank + r for r in direct)
    mode = "L" if spec.channels == 1 else "RGB"
    try:
        tall = Image.frombytes(
            mode, (spec.width, len(direct) * (spec.height + 1)), zlib.compress(stacked, 0), "zip", mode, 0
        )
    except Exception:  # a filter type no PNG has: each file on its own, so that the damaged one is named
        return [_one(data, spec) for data in files]
    pixels = np.asarray(tall).reshape(len(direct), spec.height + 1, spec.width, spec.channels)[:, 1:]
    images = iter(pixels.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0))
    return [next(images) if r is not None else None for r in rows]


def _one(data: bytes, spec: ImageSpec) -> np.ndarray | None:
    rows = _pixel_data(data, spec)
    if rows is None:
        return None
    mode = "L" if spec.channels == 1 else "RGB"
    try:
        image = Image.frombytes(mode, (spec.width, spec.height), zlib.compress(rows, 0), "zip", mode, 0)
    except Exception:  # corrupt pixel data: Pillow's full path reports it
        return None
    return _channels_first(image)


def decode_model_sized_png(data: bytes, spec: ImageSpec) -> np.ndarray | None:
    """One file through `decode_model_sized_pngs`."""
    return decode_model_sized_pngs([data], spec)[0]


def _channels_first(image: Image.Image) -> np.ndarray:
    """A decoded L or RGB image -> float32 [C, H, W] in [0, 1].

    Pillow's uint8 buffer, then float32: asking np.asarray for float32 directly costs more than a 28x28 PNG's
    decoding. Dividing by a float32 255 gives the same bits as dividing the float32 pixels by 255.0.
    """
    array = np.asarray(image).astype(np.float32) / np.float32(255.0)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def open_image(data: bytes, max_pixels: int, what: str = "image") -> Image.Image:
    """Read a PNG/JPEG header (not its pixels) and check its size; `to_array` decodes it."""
    fmt = sniff(data, what)
    if fmt == "PNG":
        data = png_pixel_chunks(data, what)
    elif jpeg_header_steps(data) > MAX_JPEG_HEADER_STEPS:
        raise InvalidInput(
            f"{what} is a JPEG with more than {MAX_JPEG_HEADER_STEPS} segments or padding bytes before its image "
            "data; real files have a few dozen: save it again with an ordinary encoder"
        )
    elif (scans := data.count(b"\xff\xda")) > MAX_JPEG_SCANS:
        raise InvalidInput(
            f"{what} is a JPEG of {scans} scans; at most {MAX_JPEG_SCANS} are accepted (encoders write about a "
            "dozen): save it again with an ordinary encoder, or as a baseline JPEG or a PNG"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])  # reads the header only, not the pixels
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PayloadTooLarge(
            f"{what} declares more pixels than Pillow's safety limit; the limit here is "
            f"{max_pixels} pixels (VAE_MAX_PIXELS)"
        ) from None
    except UnidentifiedImageError:
        raise InvalidInput(
            f"{what} starts like a {fmt} but its header is corrupt; send an intact PNG or JPEG file"
        ) from None
    except Exception as e:  # Pillow's parsers raise many types on bad bytes (struct.error, IndexError, KeyError...)
        raise InvalidInput(f"{what} is not a readable {fmt} ({_reason(e)}); send an intact PNG or JPEG file") from None
    width, height = image.size
    if width * height > max_pixels:  # checked on the header, before a decompression bomb is expanded
        raise PayloadTooLarge(
            f"{what} is {width}x{height} = {width * height} pixels; the limit is {max_pixels} (VAE_MAX_PIXELS); "
            "resize it before sending"
        )
    return image


def decode_image(data: bytes, spec: ImageSpec, max_pixels: int, what: str = "image") -> np.ndarray:
    """PNG/JPEG bytes -> float32 [C, H, W] in [0, 1], converted to the model's channels and resized to its size."""
    return to_array(open_image(data, max_pixels, what), data, spec, what)


def to_array(image: Image.Image, data: bytes, spec: ImageSpec, what: str = "image") -> np.ndarray:
    """An opened image (of the file `data`) -> float32 [C, H, W] in [0, 1] in the model's channels and size (decodes
    the pixels)."""
    try:
        image.load()  # the pixels, and a PNG's chunks after them (an eXIf chunk may follow the image data)
    except Exception as e:  # corrupt pixels: OSError, struct.error, ...
        raise InvalidInput(f"{what} could not be decoded ({_reason(e)}); send an intact PNG or JPEG file") from None
    if image.format == "PNG":
        _check_png_rows(image, data, what)
    try:
        image = to_mode(upright(image), spec.channels)
        if image.size != (spec.width, spec.height):
            image = image.resize((spec.width, spec.height), Image.Resampling.LANCZOS, reducing_gap=3.0)
        return _channels_first(image)
    except Exception as e:  # corrupt EXIF: struct.error (exif_transpose), KeyError...
        raise InvalidInput(f"{what} could not be decoded ({_reason(e)}); send an intact PNG or JPEG file") from None


# Pillow decodes a PNG whose compressed image data ends early (a complete zlib stream holding fewer rows than the
# header declares) without a word, leaving the missing rows black. Counting the inflated bytes finds it, at the
# cost of inflating the data a second time, so it is counted only when the image could be one such: interlaced (a
# missing pass leaves pixels black anywhere), or with a last row of zeros (rows are filled in order).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _check_png_rows(image: Image.Image, data: bytes, what: str) -> None:
    """`data` is a PNG whose header comes first (`png_pixel_chunks` refused any other) and `image` its pixels."""
    width, height = image.size
    _, _, depth, colour, interlace = _png_header(data)
    if not interlace and np.asarray(image.crop((0, height - 1, width, height))).any():
        return
    bits = depth * _PNG_CHANNELS.get(colour, 1)
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    expected = 0
    for x0, y0, dx, dy in passes:
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if columns > 0 and rows > 0:
            expected += rows * (1 + -(-columns * bits // 8))  # a filter byte, then the packed row
    found = _inflated_size(data, expected)
    if found < expected:
        raise InvalidInput(
            f"{what} is a PNG whose image data ends after {found} of the {expected} bytes its header declares "
            "(rows are missing); send an intact PNG file"
        )


def _inflated_size(data: bytes, bound: int) -> int:
    """How many bytes the IDAT chunks of a PNG file inflate to, counted up to `bound` + 1, 1 MiB at a time."""
    inflate, position, size = zlib.decompressobj(), 8, 0
    while position + 8 <= len(data) and size <= bound:
        (length,) = struct.unpack_from(">I", data, position)
        if data[position + 4 : position + 8] == b"IDAT":
            pending = data[position + 8 : position + 8 + length]
            while pending and size <= bound and not inflate.eof:
                try:
                    size += len(inflate.decompress(pending, 1 << 20))
                except zlib.error:  # damaged past the rows Pillow read: what came before is what counts
                    return size
                pending = inflate.unconsumed_tail
        position += 12 + length
    return size


def _reason(error: Exception) -> str:
    """Pillow's message, or the exception's name when it has none; cut short, since it may quote the input."""
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:200] + "..."


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[C, H, W] floats in [0, 1] -> [H, W] or [H, W, C] uint8 for Pillow (NaN -> 0, out of range clipped)."""
    # fmax/fmin drop NaN in favour of the bound: NaN -> 0, as numpy.nan_to_num then clip did, at a third the cost.
    pixels = (np.fmin(np.fmax(image, 0.0), 1.0) * 255.0 + 0.5).astype(np.uint8)
    return pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)


# Up to this many pixels a PNG is written here (unfiltered rows, one zlib call): half of Pillow's time for a 28x28
# digit, most of which is its encoder set-up. Larger images (grids, scaled ones) keep Pillow's row filters, which
# make photos' PNGs smaller.
SMALL_PNG_PIXELS = 64 * 64
_PNG_COLOUR_TYPES = {2: 0, 3: 2}  # array dimensions -> PNG colour type: grey, RGB


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _small_png(pixels: np.ndarray) -> bytes:
    """uint8 [H, W] or [H, W, 3] -> PNG bytes: each row led by filter type 0 (none), deflated in one call."""
    height, width = pixels.shape[:2]
    rows = np.zeros((height, 1 + pixels[0].size), np.uint8)
    rows[:, 1:] = pixels.reshape(height, -1)
    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPES[pixels.ndim], 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)),
            _png_chunk(b"IEND", b""),
        )
    )


def encode_png(image: np.ndarray, scale: int = 1) -> bytes:
    """[C, H, W] in [0, 1] -> PNG bytes (grayscale for one channel, RGB for three), `scale` times larger.

    The enlargement is nearest neighbour (each pixel a scale x scale block), done on the 8-bit image: a quarter of
    the memory the float32 array would take. Callers check the enlarged size against their limit first.
    """
    pixels = to_uint8(image)
    if scale > 1:
        pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    if pixels.shape[0] * pixels.shape[1] <= SMALL_PNG_PIXELS:
        return _small_png(pixels)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def grid_size(n: int, height: int, width: int, columns: int | None = None, padding: int = 2) -> tuple[int, int]:
    """(height, width) of the grid `grid` makes of n images of height x width, without making it."""
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    return padding + rows * (height + padding), padding + columns * (width + padding)


def grid(images: np.ndarray, columns: int | None = None, padding: int = 2, pad_value: float = 0.5) -> np.ndarray:
    """[N, C, H, W] -> one [C, H', W'] image, row-major, nearly square unless `columns` is given."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    out = np.full((c, *grid_size(n, h, w, columns, padding)), pad_value, np.float32)
    for i, image in enumerate(images):
        top = padding + (i // columns) * (h + padding)
        left = padding + (i % columns) * (w + padding)
        out[:, top : top + h, left : left + w] = image
    return out

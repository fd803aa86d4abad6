"""Request payloads for API tests: small PNG/JPEG files and .npy bodies."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
from PIL import Image


def png(array: np.ndarray | None = None, size: int = 8, seed: int = 0) -> bytes:
    if array is None:
        array = np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(size: int = 8, value: int = 128) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def load_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def load_png(data: bytes) -> np.ndarray:
    """PNG bytes -> float [H, W] or [H, W, C] in [0, 1]."""
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.float32) / 255.0


# --- hostile payloads (also used by tests/integration/test_hostile_inputs.py) ---------------------------------

MIB = 1024 * 1024


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def ztxt_bomb_png(chunks: int = 60, text_bytes: int = MIB, size: int = 28) -> bytes:
    """A valid size x size PNG carrying `chunks` zTXt chunks, each `text_bytes` of text compressed to about 1 KiB."""
    text = zlib.compress(b" " * text_bytes, 9)
    plain = png(size=size)
    ztxt = b"".join(png_chunk(b"zTXt", b"Comment%d\0\0" % i + text) for i in range(chunks))
    return plain[:33] + ztxt + plain[33:]  # after the 8-byte signature and the 25-byte IHDR chunk


def bad_exif_jpeg(size: int = 8) -> bytes:
    """A small valid JPEG whose EXIF says "rotate" and holds a ResolutionUnit (a SHORT tag) of 70000: Pillow reads
    it, and raises struct.error when exif_transpose writes the EXIF back without the orientation."""
    entries = [(0x0112, 3, struct.pack(">HH", 6, 0)), (0x0128, 4, struct.pack(">L", 70_000))]
    ifd = struct.pack(">H", len(entries)) + b"".join(struct.pack(">HHL", t, k, 1) + v for t, k, v in entries)
    exif = b"Exif\0\0MM\0*\0\0\0\x08" + ifd + b"\0\0\0\0"
    plain = jpeg(size=size)
    return plain[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + plain[2:]


def npy_header(header: str, version: bytes = b"\x01\x00") -> bytes:
    """A .npy file's magic, version and header (as numpy.save pads it), with no data after it."""
    text = header.encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY" + version + struct.pack("<H", len(text)) + text

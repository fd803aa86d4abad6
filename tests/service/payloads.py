"""Request payloads for API tests: small PNG/JPEG files and .npy bodies."""

from __future__ import annotations

import base64
import io

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

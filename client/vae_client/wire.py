"""What travels: images as PNG (or the caller's own PNG/JPEG files), arrays as .npy, and PIL images back.

Image arrays follow the service's layout: one image is [H, W] or [C, H, W] (C = 1, 3 or 4), a batch is
[N, H, W] (gray) or [N, C, H, W]; float values are in [0, 1], uint8 values in [0, 255].
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import httpx
import numpy as np
from numpy.typing import ArrayLike
from PIL import Image

from .errors import unexpected

NPY = "application/x-npy"
JSON = "application/json"
_JPEG = b"\xff\xd8\xff"
_MODES = {1: "L", 3: "RGB", 4: "RGBA"}

# One image: an array, a PIL image, a PNG or JPEG file's bytes, or the path of one.
ImageInput: TypeAlias = np.ndarray | Image.Image | bytes | str | os.PathLike[str]
# One image, or several: a sequence of them, or a batch array [N, H, W] / [N, C, H, W].
Images: TypeAlias = ImageInput | Sequence[ImageInput]
Files: TypeAlias = list[tuple[str, tuple[str, bytes, str]]]


def each_image(images: Images) -> list[ImageInput]:
    """The images one by one; an array of 3 or 4 dimensions is a batch."""
    if isinstance(images, np.ndarray):
        if images.ndim == 2:
            return [images]
        if images.ndim in (3, 4):
            return list(images)
        raise ValueError(f"an image array has 2 to 4 dimensions ([H, W] ... [N, C, H, W]); got shape {images.shape}")
    if isinstance(images, Image.Image | bytes | str | os.PathLike):
        return [images]
    return list(images)


def _uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.floating):
        return np.rint(np.clip(array.astype(np.float32), 0.0, 1.0) * 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer) and (array.size == 0 or 0 <= array.min() <= array.max() <= 255):
        return array.astype(np.uint8)
    raise ValueError(f"image arrays are float in [0, 1] or integers in [0, 255]; got dtype {array.dtype}")


def to_image(array: ArrayLike) -> Image.Image:
    """One image array, [H, W] or [C, H, W] (C = 1, 3 or 4; float in [0, 1] or uint8), as a PIL image."""
    pixels = np.asarray(array)
    if pixels.ndim == 3 and pixels.shape[0] in _MODES:
        mode = _MODES[pixels.shape[0]]
        pixels = pixels[0] if mode == "L" else np.moveaxis(pixels, 0, -1)
    elif pixels.ndim != 2:
        raise ValueError(f"one image is [H, W] or [C, H, W] with C = 1, 3 or 4; got shape {pixels.shape}")
    return Image.fromarray(np.ascontiguousarray(_uint8(pixels)))


def to_images(array: ArrayLike) -> list[Image.Image]:
    """Images the service returned, [..., C, H, W], as PIL images in row order ([rows, steps, ...] flattened)."""
    pixels = np.asarray(array)
    if pixels.ndim < 4:
        raise ValueError(f"a batch of images is [N, C, H, W] (or more leading axes); got shape {pixels.shape}")
    return [to_image(image) for image in pixels.reshape(-1, *pixels.shape[-3:])]


def file_bytes(image: ImageInput) -> tuple[bytes, str]:
    """An image as a file to upload, and its media type: files and bytes go as they are, the rest as PNG."""
    if isinstance(image, bytes):
        data = image
    elif isinstance(image, str | os.PathLike):
        data = Path(image).read_bytes()
    else:
        buffer = io.BytesIO()
        (image if isinstance(image, Image.Image) else to_image(image)).save(buffer, format="PNG")
        return buffer.getvalue(), "image/png"
    return data, "image/jpeg" if data.startswith(_JPEG) else "image/png"


def image_files(images: Images, field: str = "file") -> Files:
    """Multipart parts, one file per image, all in the form field `field`."""
    parts: Files = []
    for i, image in enumerate(each_image(images)):
        data, media = file_bytes(image)
        parts.append((field, (f"{i}.{media.split('/')[1]}", data, media)))
    return parts


def npy_bytes(array: ArrayLike) -> bytes:
    """A float32 array as a .npy file's bytes (numpy.save)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def read_npy(response: httpx.Response) -> np.ndarray:
    """A .npy response body as an array (never unpickled)."""
    if not response.headers.get("content-type", "").startswith(NPY):
        raise unexpected(response, NPY)
    return np.load(io.BytesIO(response.content), allow_pickle=False)


def read_json(response: httpx.Response) -> Any:
    if not response.headers.get("content-type", "").startswith(JSON):
        raise unexpected(response, JSON)
    return response.json()

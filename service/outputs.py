"""Responses: choose the output format (`format=` or `Accept`) and render images and arrays in it.

png: one image, or a grid for several; json: base64 PNGs plus the numbers that belong with them;
npy: the float32 array itself (`numpy.load(io.BytesIO(body))`).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from fastapi import Request, Response
from fastapi.responses import JSONResponse

from .errors import InvalidInput
from .images import encode_png, grid

Format = Literal["png", "json", "npy"]
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "json": "application/json", "npy": "application/x-npy"}


def _accepted(accept: str) -> list[tuple[float, int, str]]:
    ranked = []
    for position, item in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        ranked.append((q, -position, media.lower()))
    return sorted(ranked, reverse=True)


def choose_format(request: Request, requested: Format | None, allowed: Sequence[Format], default: Format) -> Format:
    """`format=` wins; else the best `Accept` entry this route can produce; else the route's default."""
    if requested is not None:
        if requested not in allowed:
            raise InvalidInput(
                f"format={requested!r} is not available on {request.url.path}; choose one of {list(allowed)}"
            )
        return requested
    by_media = {MEDIA_TYPES[f]: f for f in allowed}
    for q, _, media in _accepted(request.headers.get("accept", "")):
        if q <= 0:
            continue
        if media in by_media:
            return by_media[media]
        if media == "*/*":
            return default
        if media == "image/*" and "png" in allowed:
            return "png"
    return default  # nothing acceptable named: answer in the default rather than 406


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()


def npy_response(array: np.ndarray, headers: dict[str, str] | None = None) -> Response:
    return Response(npy_bytes(array), media_type=MEDIA_TYPES["npy"], headers=headers)


def b64_png(image: np.ndarray) -> str:
    return base64.b64encode(encode_png(image)).decode("ascii")


def images_response(
    fmt: Format,
    images: np.ndarray,
    *,
    fields: dict[str, Any],
    headers: dict[str, str] | None = None,
    columns: int | None = None,
) -> Response:
    """Images [N, C, H, W] as one PNG (a grid when N > 1), a JSON object, or a .npy array.

    `fields` (model, seed, labels, errors...) go into the JSON body; routes put the short ones in headers too.
    `columns` sets the PNG grid's width (default: nearly square).
    """
    headers = dict(headers or {})
    if fmt == "json":
        body = {**fields, "shape": list(images.shape), "images": [b64_png(im) for im in images]}
        return JSONResponse(body, headers=headers)
    if fmt == "npy":
        return npy_response(images, headers)
    png = encode_png(images[0] if len(images) == 1 else grid(images, columns=columns))
    return Response(png, media_type=MEDIA_TYPES["png"], headers=headers)

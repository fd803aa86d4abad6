"""Responses: choose the output format (`format=` or `Accept`) and render images and arrays in it.

png: one image, or a grid for several; json: base64 PNGs plus the numbers that belong with them;
npy: the float32 array itself (`numpy.load(io.BytesIO(body))`).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson
from fastapi import Request, Response
from starlette.types import Receive, Scope, Send

from .errors import InvalidInput
from .images import encode_png, grid, grid_size
from .offload import cpu_bound

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


def npy_header(array: np.ndarray) -> bytes:
    """The .npy format's header for `array` (numpy.save writes the same bytes before the data)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, np.lib.format.header_data_from_array_1_0(array))
    return buffer.getvalue()


class NpyResponse(Response):
    """A float32 array as a .npy body: the header, then the array's buffer, with no intermediate copy."""

    media_type = MEDIA_TYPES["npy"]

    def __init__(self, array: np.ndarray, headers: dict[str, str] | None = None) -> None:
        self.array = np.ascontiguousarray(array, dtype=np.float32)
        self.header = npy_header(self.array)
        super().__init__(headers=headers)
        self.headers["content-length"] = str(len(self.header) + self.array.nbytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if scope.get("method") == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.body", "body": self.header, "more_body": True})
        # The array's own buffer as bytes (a view, not a copy): uvicorn hands it to the socket as it is.
        await send({"type": "http.response.body", "body": self.array.reshape(-1).view(np.uint8).data})


def npy_response(array: np.ndarray, headers: dict[str, str] | None = None) -> Response:
    return NpyResponse(array, headers)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):  # arrays orjson does not take directly (non-contiguous)
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_bytes(content: Any) -> bytes:
    """JSON by orjson: numpy arrays are written directly, without `.tolist()`, several times faster than json."""
    return orjson.dumps(content, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY)


async def json_response(content: dict[str, Any], headers: dict[str, str] | None = None, *, numbers: int) -> Response:
    """`content` as JSON; rendered on a worker thread when it holds many `numbers` (service/offload.py)."""
    body = await cpu_bound(json_bytes, content, pixels=numbers // 4)  # a number costs about 4 pixels' PNG work
    return Response(body, media_type="application/json", headers=headers)


@dataclass(frozen=True)
class Scale:
    """How much larger PNG outputs are drawn (`scale=`, nearest neighbour), and the most pixels that may make."""

    factor: int = 1
    max_pixels: int | None = None  # width x height of a response's images after scaling (VAE_MAX_OUTPUT_PIXELS)

    def check(self, fmt: Format, images: np.ndarray, columns: int | None) -> None:
        """InvalidInput (422) when the scaled images would be over the limit; before any of them is made."""
        if self.factor == 1:
            return
        if fmt == "npy":
            raise InvalidInput(
                f"scale={self.factor} enlarges PNG images; format npy returns the model's array at its own size: "
                "drop scale, or ask for png or json"
            )
        n, _, h, w = images.shape
        if fmt == "png" and n > 1:  # one PNG: the grid
            (h, w), n = grid_size(n, h, w, columns), 1
        width, height = w * self.factor, h * self.factor
        if self.max_pixels is not None and n * width * height > self.max_pixels:
            raise InvalidInput(
                f"scale={self.factor} makes {n} PNG image(s) of {width}x{height}, {n * width * height} pixels in "
                f"all; the limit is {self.max_pixels} (VAE_MAX_OUTPUT_PIXELS): ask for a smaller scale or fewer images"
            )


def b64_png(image: np.ndarray, scale: int = 1) -> str:
    return base64.b64encode(encode_png(image, scale)).decode("ascii")


def _render(fmt: Format, images: np.ndarray, fields: dict[str, Any], columns: int | None, scale: int) -> bytes:
    if fmt == "json":
        pngs = [b64_png(im, scale) for im in images]
        return json_bytes({**fields, "shape": list(images.shape), "scale": scale, "images": pngs})
    return encode_png(images[0] if len(images) == 1 else grid(images, columns=columns), scale)


async def images_response(
    fmt: Format,
    images: np.ndarray,
    *,
    fields: dict[str, Any],
    headers: dict[str, str] | None = None,
    columns: int | None = None,
    scale: Scale = Scale(),
) -> Response:
    """Images [N, C, H, W] as one PNG (a grid when N > 1), a JSON object, or a .npy array.

    `fields` (model, seed, labels, errors...) go into the JSON body; routes put the short ones in headers too.
    `columns` sets the PNG grid's width (default: nearly square); `scale` enlarges the PNGs, checked against its
    limit before any is made. PNG and base64 encoding run off the event loop unless the images are small
    (service/offload.py).
    """
    scale.check(fmt, images, columns)
    if fmt == "npy":
        return npy_response(images, headers)
    pixels = images.size * scale.factor**2
    body = await cpu_bound(_render, fmt, images, fields, columns, scale.factor, pixels=pixels)
    return Response(body, media_type=MEDIA_TYPES[fmt], headers=headers)

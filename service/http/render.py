"""Replies: choose the output format (`format=` or `Accept`) and render images and arrays in it.

png: one image, or a grid for several; json: base64 PNGs plus the numbers that belong with them; npy: the float32
array itself (`numpy.load(io.BytesIO(body))`). Rendering is plain CPU work on arrays: the batch workers call it for
small answers (in one pass over their batch), routes offload large ones (service/offload.py).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
import orjson

from ..errors import InvalidInput, PayloadTooLarge
from ..offload import cpu_bound, is_small
from ..settings import LimitSettings
from .images import encode_png, grid, grid_size
from .query import Format
from .reply import Reply, array_bytes

R = TypeVar("R")
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


def choose_format(
    requested: Format | None, accept: str | None, allowed: Sequence[Format], default: Format, path: str
) -> Format:
    """`format=` wins; else the best `Accept` entry this route can produce; else the route's default."""
    if requested is not None:
        if requested not in allowed:
            raise InvalidInput(f"format={requested!r} is not available on {path}; choose one of {list(allowed)}")
        return requested
    if not accept:
        return default
    by_media = {MEDIA_TYPES[f]: f for f in allowed}
    for q, _, media in _accepted(accept):
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


def npy_reply(array: np.ndarray, headers: dict[str, str] | None = None) -> Reply:
    """A float32 array as a .npy body: the header, then the array's own buffer (no copy)."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    return Reply(200, MEDIA_TYPES["npy"], npy_header(array), headers or {}, tail=array_bytes(array))


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):  # arrays orjson does not take directly (non-contiguous)
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_bytes(content: Any) -> bytes:
    """JSON by orjson: numpy arrays are written directly, without `.tolist()`, several times faster than json."""
    return orjson.dumps(content, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY)


def json_reply(content: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    return Reply(200, "application/json", json_bytes(content), headers or {})


async def json_reply_offloaded(content: dict[str, Any], headers: dict[str, str] | None, *, numbers: int) -> Reply:
    """`content` as JSON; rendered on a worker thread when it holds many `numbers` (service/offload.py)."""
    return await cpu_bound(json_reply, content, headers, pixels=numbers // 4)  # a number: about 4 pixels' work


JSON_NUMBER_BYTES = 24  # the longest a float32 takes in a JSON answer: "-1.2345678901234567e-05,"
JSON_FIELDS_BYTES = 1024  # an images answer's fields besides the images (model, seed, shape, ...), at most
JSON_PER_IMAGE_BYTES = 128  # per image: its quotes and comma, its label and any number that goes with it


def png_bytes_at_most(height: int, width: int, channels: int) -> int:
    """The largest a PNG of this size can be, whatever its pixels: each row is a filter byte and the 8-bit
    samples, deflate adds at most zlib's compressBound to that, and the chunks their framing."""
    raw = height * (1 + width * channels)
    deflated = raw + (raw >> 12) + (raw >> 14) + (raw >> 25) + 13
    return 8 + 25 + 12 + deflated + 12 * (1 + deflated // 4096)  # signature, IHDR, IEND, IDAT chunks


def npy_bytes(numbers: int) -> int:
    return 128 + 4 * numbers  # the header (numpy pads it to 128 bytes for these shapes), then float32 data


def check_answer_size(size: int, limit: int | None, what: str, instead: str) -> None:
    """PayloadTooLarge, before the answer is made, when it could be more than `limit` bytes."""
    if limit is not None and size > limit:
        raise PayloadTooLarge(
            f"the answer would be up to {size} bytes ({what}), more than {limit} (VAE_MAX_RESPONSE_BYTES); {instead}"
        )


@dataclass(frozen=True)
class Scale:
    """How much larger PNG outputs are drawn (`scale=`, nearest neighbour), and the limits an images answer is
    checked against before any image is made."""

    factor: int = 1
    max_pixels: int | None = None  # width x height of a response's images after scaling (VAE_MAX_OUTPUT_PIXELS)
    max_bytes: int | None = None  # the whole answer (VAE_MAX_RESPONSE_BYTES)

    @classmethod
    def of(cls, factor: int, limits: LimitSettings) -> Scale:
        return cls(factor, limits.max_output_pixels, limits.max_response_bytes)

    def check(self, fmt: Format, shape: tuple[int, ...], columns: int | None = None, *, numbers: int = 0) -> None:
        """InvalidInput (422) when images of `shape` [N, C, H, W] would be over the pixel limit once scaled, and
        PayloadTooLarge (413) when the answer could be over the byte limit: checked before the images are made.
        An npy answer's shape may have more leading axes ([N, S, C, H, W]); JSON may carry `numbers` besides."""
        if fmt == "npy":
            if self.factor != 1:
                raise InvalidInput(
                    f"scale={self.factor} enlarges PNG images; format npy returns the model's array at its own "
                    "size: drop scale, or ask for png or json"
                )
            what = f"{math.prod(shape[:-3])} float32 arrays of {'x'.join(map(str, shape[-3:]))}"
            check_answer_size(self.answer_bytes(fmt, shape), self.max_bytes, what, "ask for fewer images")
            return
        n, _, h, w = shape
        if fmt == "png" and n > 1:  # one PNG: the grid
            (h, w), n = grid_size(n, h, w, columns), 1
        width, height = w * self.factor, h * self.factor
        if self.factor != 1 and self.max_pixels is not None and n * width * height > self.max_pixels:
            raise InvalidInput(
                f"scale={self.factor} makes {n} PNG image(s) of {width}x{height}, {n * width * height} pixels in "
                f"all; the limit is {self.max_pixels} (VAE_MAX_OUTPUT_PIXELS): ask for a smaller scale or fewer images"
            )
        check_answer_size(
            self.answer_bytes(fmt, shape, columns, numbers=numbers),
            self.max_bytes,
            f"{n} {fmt} image(s) of {width}x{height}",
            "ask for fewer images or a smaller scale",
        )

    def answer_bytes(self, fmt: Format, shape: tuple[int, ...], columns: int | None = None, *, numbers: int = 0) -> int:
        """The most bytes an images answer of `shape` can take in `fmt`, whatever the pixels (JSON: with `numbers`
        more numbers in its fields)."""
        if fmt == "npy":
            return npy_bytes(math.prod(shape))
        n, c, h, w = shape
        if fmt == "png" and n > 1:
            (h, w), n = grid_size(n, h, w, columns), 1
        png = png_bytes_at_most(h * self.factor, w * self.factor, c)
        if fmt == "json":
            return JSON_FIELDS_BYTES + n * (4 * math.ceil(png / 3) + JSON_PER_IMAGE_BYTES) + numbers * JSON_NUMBER_BYTES
        return png


def b64_png(image: np.ndarray, scale: int = 1) -> str:
    return base64.b64encode(encode_png(image, scale)).decode("ascii")


def _render(fmt: Format, images: np.ndarray, fields: dict[str, Any], columns: int | None, scale: int) -> bytes:
    if fmt == "json":
        pngs = [b64_png(im, scale) for im in images]
        return json_bytes({**fields, "shape": list(images.shape), "scale": scale, "images": pngs})
    return encode_png(images[0] if len(images) == 1 else grid(images, columns=columns), scale)


def images_reply(
    fmt: Format,
    images: np.ndarray,
    *,
    fields: dict[str, Any],
    headers: dict[str, str] | None = None,
    columns: int | None = None,
    scale: Scale = Scale(),
) -> Reply:
    """Images [N, C, H, W] as one PNG (a grid when N > 1), a JSON object, or a .npy array.

    `fields` (model, seed, labels, errors...) go into the JSON body; routes put the short ones in headers too.
    `columns` sets the PNG grid's width (default: nearly square); `scale` enlarges the PNGs, checked against its
    limit before any is made.
    """
    scale.check(fmt, images.shape, columns)
    if fmt == "npy":
        return npy_reply(images, headers)
    return Reply(200, MEDIA_TYPES[fmt], _render(fmt, images, fields, columns, scale.factor), headers or {})


def png_work(fmt: Format, shape: tuple[int, ...], scale: Scale) -> int:
    """PNG work of an images reply of `shape`, in pixels (none for npy, whose array goes out as it is)."""
    return 0 if fmt == "npy" else math.prod(shape) * scale.factor**2


async def rendered(
    call: Callable[[Callable[[Any], Any]], Awaitable[Any]], render: Callable[[R], Reply], *, pixels: int
) -> Reply:
    """The reply to a model operation: `call(then=render)` renders on the batch's worker thread when the answer is
    small (`pixels` of PNG work, or JSON numbers / 4); a large one comes back as data and is rendered off the loop."""
    if is_small(pixels=pixels):
        reply = await call(render)
        assert isinstance(reply, Reply)
        return reply
    result = await call(_same)
    return await cpu_bound(render, result, pixels=pixels)


def _same(value: R) -> R:
    return value


async def images_reply_offloaded(
    fmt: Format,
    images: np.ndarray,
    *,
    fields: dict[str, Any],
    headers: dict[str, str] | None = None,
    columns: int | None = None,
    scale: Scale = Scale(),
) -> Reply:
    """`images_reply`, on a worker thread unless the images are small (service/offload.py)."""
    scale.check(fmt, images.shape, columns)
    render = partial(images_reply, fields=fields, headers=headers, columns=columns, scale=scale)
    return await cpu_bound(render, fmt, images, pixels=png_work(fmt, images.shape, scale))

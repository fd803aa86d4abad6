"""CPU work inside request handlers (image decoding, PNG encoding, JSON, scoring arithmetic): inline when small, else
on a thread.

A hop to a worker thread costs the event loop a wake-up, a future and a GIL hand-off each way, about as much as
decoding one small PNG; under load those hand-offs, not the work, set the pace. So work below `INLINE_PIXELS`
pixels and `INLINE_BYTES` input bytes runs on the loop, and anything larger (a big upload, a 256-image grid)
runs on a worker thread so one request cannot stall the others. Bytes count as well as pixels because
the cost of reading a file is not bounded by its pixels: a 28x28 PNG can carry megabytes of chunks to walk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# About 0.2 ms of PNG decoding or encoding on one core: 64 MNIST digits, or one 256x256 grayscale image.
INLINE_PIXELS = 64 * 1024
# About the size of INLINE_PIXELS pixels as PNG files; reading the headers of this many bytes takes well under
# 0.1 s however hostile the files are (one Pillow marker or chunk per few bytes).
INLINE_BYTES = 64 * 1024


def is_small(*, pixels: int = 0, nbytes: int = 0) -> bool:
    """Whether work on `pixels` pixels read from `nbytes` bytes is cheap enough to run on the event loop."""
    return pixels <= INLINE_PIXELS and nbytes <= INLINE_BYTES


async def cpu_bound(work: Callable[..., T], *args: object, pixels: int = 0, nbytes: int = 0) -> T:
    """`work(*args)`, run inline when `is_small(pixels=..., nbytes=...)`, else on a worker thread."""
    if is_small(pixels=pixels, nbytes=nbytes):
        return work(*args)
    return await asyncio.to_thread(work, *args)

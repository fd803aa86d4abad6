"""CPU work inside request handlers (image decoding, PNG encoding, JSON): inline when small, else on a thread.

A hop to a worker thread costs the event loop a wake-up, a future and a GIL hand-off each way, about as much as
decoding one small PNG; under load those hand-offs, not the work, set the pace. So work below `INLINE_PIXELS`
runs on the loop, and anything larger (a big upload, a 256-image grid) runs on Starlette's thread pool so one
request cannot stall the others.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")

# About 0.2 ms of PNG decoding or encoding on one core: 64 MNIST digits, or one 256x256 grayscale image.
INLINE_PIXELS = 64 * 1024


async def cpu_bound(work: Callable[..., T], *args: object, pixels: int) -> T:
    """`work(*args)`, run inline when it touches at most INLINE_PIXELS pixels, else on a worker thread."""
    if pixels <= INLINE_PIXELS:
        return work(*args)
    return await run_in_threadpool(work, *args)

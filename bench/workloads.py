"""The requests every server is measured with, and one measured row: load-generator figures plus the server's CPU."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from .load import Server
from .loadgen import Request, sweep

CLIENTS = (1, 8, 64)
HOST = "127.0.0.1"
# Each HTTP row is the median (by req/s) of this many runs, back to back: on a shared, noisy machine one run's
# req/s and p99 move by tens of percent, and a target must not be decided by one. bench/run.py sets it (--repeats;
# 1 for --quick).
REPEATS = 3
BOUNDARY = "vae-bench-boundary"


def digit_png() -> bytes:
    """A 28x28 grayscale PNG, the size of the shipped models' input."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(field: str, filename: str, content: bytes, content_type: str) -> bytes:
    """A multipart/form-data body with one file (boundary BOUNDARY)."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + content + f"\r\n--{BOUNDARY}--\r\n".encode()


# One image to /encode as a raw PNG body (the service, the PyTorch-eager server), and as a multipart upload in the
# field "image" (LitServe's documented way to send a file; the service takes it too).
ENCODE = Request("POST", "/encode", digit_png(), {"Content-Type": "image/png"})
ENCODE_FORM = Request(
    "POST",
    "/encode",
    multipart("image", "digit.png", digit_png(), "image/png"),
    {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
)


def median_run(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`run()` REPEATS times; the run with the median req/s, and every run's req/s (`runs_rps`)."""
    runs = [run() for _ in range(REPEATS)]
    chosen = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
    return {**chosen, "runs_rps": [r["rps"] for r in runs]}


def median_sweep(port: int, request: Request, clients: int, seconds: float) -> dict[str, Any]:
    """`sweep` on this machine's server at `port`, as the median of REPEATS runs."""
    return median_run(lambda: sweep(HOST, port, request, clients, seconds))


def measure(server: Server, port: int, request: Request, clients: int, seconds: float, images: int = 1) -> dict:
    """One row (the median of REPEATS runs): load-generator figures, plus the server's CPU time per answered
    request (utime + stime of its processes, from /proc).

    Each run's CPU window spans its whole sweep, whose one untimed set-up request per connection is counted as a
    request.
    """
    return median_run(lambda: _measure_once(server, port, request, clients, seconds, images))


def _measure_once(server: Server, port: int, request: Request, clients: int, seconds: float, images: int) -> dict:
    before = server.cpu_seconds()
    result: dict[str, Any] = sweep(HOST, port, request, clients, seconds)
    used = server.cpu_seconds() - before
    answered = result["requests"] + result["errors"] + clients
    return {**result, "images_per_s": images * result["rps"], "server_cpu_ms": 1000 * used / answered}

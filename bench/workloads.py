"""The requests every server is measured with, and one measured row: load-generator figures plus the server's CPU."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from .load import Server
from .loadgen import Request, sweep

CLIENTS = (1, 8, 64)
HOST = "127.0.0.1"
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


def measure(server: Server, port: int, request: Request, clients: int, seconds: float, images: int = 1) -> dict:
    """One sweep, plus the server's CPU time per answered request (utime + stime of its processes, from /proc).

    The CPU window spans the whole sweep, whose one untimed set-up request per connection is counted as a request.
    """
    before = server.cpu_seconds()
    result: dict[str, Any] = sweep(HOST, port, request, clients, seconds)
    used = server.cpu_seconds() - before
    answered = result["requests"] + result["errors"] + clients
    return {**result, "images_per_s": images * result["rps"], "server_cpu_ms": 1000 * used / answered}

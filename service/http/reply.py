"""A data-plane response as data (`Reply`), and sending it over ASGI in two messages.

Routes and the batch workers that render for them build `Reply` objects: a status, a media type, a body (bytes, or
a .npy header and an array whose buffer goes to the socket without a copy) and a few headers. Sending is the
edge's job (service/http/edge.py), which also counts it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from starlette.types import Send

Body = bytes | memoryview


@dataclass(eq=False, slots=True)
class Reply:
    status: int
    media_type: str
    body: Body
    headers: Mapping[str, str] = field(default_factory=dict)
    tail: Body | None = None  # a second part of the body, sent as it is (a .npy array's own buffer)

    @property
    def length(self) -> int:
        return len(self.body) + (0 if self.tail is None else len(self.tail))

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        raw = [(b"content-type", self.media_type.encode()), (b"content-length", str(self.length).encode())]
        raw += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in self.headers.items()]
        return raw

    async def send(self, send: Send, *, head: bool = False, request_id: str | None = None) -> None:
        """Send the reply; for a HEAD request, its headers only (Content-Length still says the body's size)."""
        headers = self.raw_headers()
        if request_id is not None:
            headers.append((b"x-request-id", request_id.encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        if head:
            await send({"type": "http.response.body", "body": b""})
        elif self.tail is None:
            await send({"type": "http.response.body", "body": self.body})
        else:
            await send({"type": "http.response.body", "body": self.body, "more_body": True})
            await send({"type": "http.response.body", "body": self.tail})


def array_bytes(array: np.ndarray) -> memoryview:
    """A contiguous array's own buffer as bytes: a view, not a copy."""
    return array.reshape(-1).view(np.uint8).data

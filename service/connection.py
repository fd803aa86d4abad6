"""The HTTP/1.1 connection: uvicorn's httptools protocol with the limits it lacks.

uvicorn caps neither the size of the headers (httptools buffers a header of any length, and concatenating
it costs seconds of event loop per 100 MB) nor the time a client may take to send them or its body; an idle
connection with no request is kept forever. `GuardedHttpProtocol` adds, from `Settings`:

- a cap on the request line plus headers (`max_header_bytes`): 431, counted on the bytes as they arrive;
- a deadline for the headers (`header_timeout_s`), running from the connection's opening (so a silent
  connection is closed too) or from the first byte of a later request on it: 408;
- for the body, an idle timeout (`body_timeout_s`) and, after that long, a minimum average rate
  (`min_body_bytes_per_s`), so a body sent a byte at a time is cut off too: 408;
- a cap on open connections (`max_connections`): the one past it is answered 503 and closed at once.

At shutdown an idle keep-alive connection is kept while other requests are still in flight (at most until its
keep-alive timeout), so that a load balancer's pooled health check reads `/ready` 503 rather than a reset; its
next request is its last.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .errors import PROBLEM_MEDIA_TYPE, problem_type
from .settings import Settings

log = logging.getLogger(__name__)


def refusal(status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 response with a problem-details body, that closes the connection."""
    body = json.dumps({"type": problem_type(slug), "title": title, "status": status, "detail": detail}).encode()
    lines = [f"content-type: {PROBLEM_MEDIA_TYPE}", f"content-length: {len(body)}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return STATUS_LINE[status] + "".join(f"{line}\r\n" for line in lines).encode("latin-1") + b"\r\n" + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus header-size, header-time, body-time and connection-count limits."""

    def __init__(self, config: Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        settings = getattr(config, "settings", None)
        if not isinstance(settings, Settings):
            raise TypeError("GuardedHttpProtocol needs a uvicorn Config with `settings` (service.server.ServiceConfig)")
        self.settings = settings
        self.refused = False  # answered and closing: what the client still sends is neither parsed nor kept
        self.in_headers = True  # from a request's first byte (or the connection's opening) to its headers' end
        self.header_bytes = 0  # bytes of the current request's line and headers so far
        self.header_tail = b""  # the last bytes of the previous chunk, where a CRLFCRLF may have begun
        self.header_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.body_started = 0.0  # monotonic time the headers ended
        self.body_last = 0.0  # monotonic time of the body's latest bytes
        self.body_bytes = 0
        self.draining = False  # the server is shutting down: this connection's next response is its last

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.settings.max_connections:
            log.warning("refused a connection from %s: %d are open already", self.client, len(self.connections) - 1)
            detail = f"the server has {self.settings.max_connections} connections open (VAE_MAX_CONNECTIONS)"
            self.refuse(refusal(503, "too-many-connections", "Too many connections", detail, {"retry-after": "1"}))
            return
        self.header_timer = self.loop.call_later(self.settings.header_timeout_s, self.headers_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_timers()
        super().connection_lost(exc)

    def refuse(self, response: bytes) -> None:
        """Answer `response` (unless the app has begun its own) and close the connection."""
        self.cancel_timers()
        self.refused = True
        if not self.transport.is_closing():
            # Never into or after the app's own answer to the same request.
            if self.in_headers:
                answer = self.cycle is None or self.cycle.response_complete
            else:
                answer = not self.cycle.response_started
            if answer:
                self.transport.write(response)
            self.transport.close()  # uvicorn then tells the app, if it still reads the body, that the client is gone

    def cancel_timers(self) -> None:
        for timer in (self.header_timer, self.body_timer):
            if timer is not None:
                timer.cancel()
        self.header_timer = self.body_timer = None

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.in_headers:
            self.header_bytes += len(data)
            if self.header_bytes > self.settings.max_header_bytes and not self.headers_end_in_time(data):
                self.headers_too_large()
                return
            self.header_tail = data[-3:]
        super().data_received(data)

    def headers_end_in_time(self, data: bytes) -> bool:
        """Whether the headers end in `data` within the limit (the rest of `data` is body, which does not count)."""
        end = (self.header_tail + data).find(b"\r\n\r\n")
        if end < 0:
            return False
        self.header_bytes += end + 4 - len(self.header_tail) - len(data)
        return self.header_bytes <= self.settings.max_header_bytes

    def headers_too_large(self) -> None:
        limit = self.settings.max_header_bytes
        log.info("refused a request from %s: headers over %d bytes", self.client, limit)
        detail = (
            f"the request line and headers exceed {limit} bytes (VAE_MAX_HEADER_BYTES); send large data in the body"
        )
        self.refuse(refusal(431, "headers-too-large", "Request header fields too large", detail))

    def headers_timed_out(self) -> None:
        self.header_timer = None
        if self.header_bytes == 0 and self.cycle is None:
            self.transport.close()  # a connection that never sent a byte gets no answer
            return
        timeout = self.settings.header_timeout_s
        log.info("closed a connection from %s: headers unfinished after %g s", self.client, timeout)
        detail = f"the request's headers did not arrive within {timeout:g} s (VAE_HEADER_TIMEOUT_S)"
        self.refuse(refusal(408, "request-timeout", "Request timeout", detail))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_headers = True
        if self.header_timer is None:  # a connection's first request: its deadline runs from the opening
            self.header_timer = self.loop.call_later(self.settings.header_timeout_s, self.headers_timed_out)

    def on_headers_complete(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        self.in_headers = False
        self.header_bytes = 0
        self.header_tail = b""
        super().on_headers_complete()
        if self.draining:
            self.cycle.keep_alive = False
        # Armed for every request; one without a body completes in this same chunk and cancels it.
        self.body_started = self.body_last = time.monotonic()
        self.body_bytes = 0
        self.body_timer = self.loop.call_later(self.settings.body_timeout_s, self.check_body)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        self.body_last = time.monotonic()
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self.body_timer is not None:
            self.body_timer.cancel()
            self.body_timer = None
        self.in_headers = True  # what comes next on this connection is the next request's headers
        super().on_message_complete()

    def body_deadline(self) -> float:
        """When the upload times out: `body_timeout_s` without a byte, or too slow on average after that long."""
        idle = self.body_last + self.settings.body_timeout_s
        rate = self.settings.min_body_bytes_per_s
        if rate == 0:
            return idle
        # The average rate since the headers falls below `rate` at body_started + body_bytes / rate.
        slow = self.body_started + max(self.settings.body_timeout_s, self.body_bytes / rate)
        return min(idle, slow)

    def check_body(self) -> None:
        if self.flow.read_paused:
            # uvicorn stopped reading (the app has not taken the body so far, or a pipelined request waits its
            # turn): the client cannot be slow while we do not read, so the clock starts again.
            self.body_started = self.body_last = time.monotonic()
            self.body_bytes = 0
        wait = self.body_deadline() - time.monotonic()
        if wait > 0:
            self.body_timer = self.loop.call_later(wait, self.check_body)
            return
        self.body_timer = None
        elapsed = time.monotonic() - self.body_started
        log.info(
            "closed a connection from %s: upload stalled, %d bytes in %.1f s", self.client, self.body_bytes, elapsed
        )
        detail = (
            f"the request body stalled: {self.body_bytes} bytes in {elapsed:.1f} s; an upload may pause at most "
            f"{self.settings.body_timeout_s:g} s (VAE_BODY_TIMEOUT_S) and must average at least "
            f"{self.settings.min_body_bytes_per_s} bytes/s (VAE_MIN_BODY_BYTES_PER_S)"
        )
        self.refuse(refusal(408, "request-timeout", "Request timeout", detail))

    def shutdown(self) -> None:
        """The server stops: finish the request in flight, then close; if idle, stay while others are in flight."""
        self.draining = True
        kept_alive = self.cycle is not None and self.cycle.response_complete
        if kept_alive and self.tasks:
            return  # closed by its keep-alive timer, or after its next response
        super().shutdown()

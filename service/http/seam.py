"""The one seam with uvicorn's internals: the HTTP/1.1 connection limits uvicorn lacks, and its exit signal.

uvicorn is pinned to one minor version in pyproject.toml; tests/service/http/test_seam.py checks every name used
here and fails with a clear message when a new uvicorn moves one. Nothing else in the service touches uvicorn's
internals (service/http/server.py uses its documented `Config` and `Server`).

uvicorn caps neither the size of the headers (httptools buffers a header of any length, and concatenating it costs
seconds of event loop per 100 MB) nor the time a client may take to send them or its body; an idle connection
with no request is kept forever. `GuardedHttpProtocol` adds, from `HttpSettings`:

- a cap on the request line plus headers (`max_header_bytes`): 431, counted on the bytes as they arrive;
- a deadline for the headers (`header_timeout_s`), running from the connection's opening (so a silent connection
  is closed too) or from the first byte of a later request on it: 408;
- for the body, an idle timeout (`body_timeout_s`), after that long a minimum average rate
  (`min_body_bytes_per_s`), so a body sent a byte at a time is cut off too, and a deadline for the whole body
  (`upload_timeout_s`), so a steady crawl just above that rate cannot hold a connection for hours: 408;
- for a chunked body, its framing and trailer fields count against the header cap (431); trailers never become
  headers; past FREE_CHUNKS chunks, they must average MIN_CHUNK_BYTES of body (400): each chunk costs the parser
  a call into Python, so a body of 1-byte chunks would cost a thousand times the work of its size;
- for a request answered before its body has all come (a 401 or a 404 needs no body), the rest of the body is read
  and dropped so that the connection can serve the next request, but only for DRAIN_S: a slow upload that was
  refused does not keep its connection slot;
- a cap on open connections (`max_connections`): the one past it is answered 503 and closed at once;
- a deadline for a client that does not read its answers (`send_timeout_s`, from the moment the send buffer is
  full): the connection is dropped and its buffered answers freed;
- a cap on what waits in full send buffers over all connections (`max_unsent_bytes`): past it the connections
  that have waited longest are dropped (clients that never read are the ones that wait; those that read resume
  within moments), and the freed memory is handed back to the operating system.

Timers are armed only when a request is still incomplete after the bytes at hand are parsed: a request that
arrives whole (the usual case on a keep-alive connection) costs no timer. At shutdown an idle keep-alive connection
is kept while other requests are still in flight (at most until its keep-alive timeout), so that a load balancer's
pooled health check reads `/ready` 503 rather than a reset; its next request is its last.

`SignalledServer` tells the app the moment SIGTERM (or SIGINT) arrives, before uvicorn starts closing connections,
so that `/ready` says 503 while requests in flight finish.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..settings import HttpSettings
from .problems import PROBLEM_MEDIA_TYPE, problem_type
from .unsent import Unsent

log = logging.getLogger(__name__)

LINGER_S = 1.0  # how long the rest of a refused body is read and dropped before the connection closes
DRAIN_S = 2.0  # how long the rest of a body answered early (a 401, a 404) may take to arrive: a client's upload
# already in flight takes moments, and a slow one cannot keep a connection slot without being served
FREE_CHUNKS = 1024  # chunks any chunked body may have; past them, MIN_CHUNK_BYTES of body each on average
MIN_CHUNK_BYTES = 1024  # clients stream in pieces of 8 KiB or more (a 10 MiB body: 11,264 chunks allowed)


def refusal(status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None) -> bytes:
    """A whole HTTP/1.1 response with a problem-details body, that closes the connection."""
    body = json.dumps({"type": problem_type(slug), "title": title, "status": status, "detail": detail}).encode()
    lines = [f"content-type: {PROBLEM_MEDIA_TYPE}", f"content-length: {len(body)}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return STATUS_LINE[status] + "".join(f"{line}\r\n" for line in lines).encode("latin-1") + b"\r\n" + body


class CoalescedWrites:
    """A connection's transport whose writes of one event-loop step go out together, at the end of the step.

    uvicorn writes a response's headers and its body separately, two system calls (and on a TCP_NODELAY socket two
    packets) per response; here they are one `writelines` (a vectored write: no copy of a large body). Everything
    else is the transport's own.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.pending: list[bytes | bytearray | memoryview] = []
        self.ended = False  # the write side is closed: later writes (a pipelined request's answer) go nowhere
        self.flushed = 0  # bytes handed to the transport in the latest flush

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        if not pending or self.transport.is_closing() or self.ended:
            return
        self.flushed = sum(len(data) for data in pending)
        if len(pending) == 1:
            self.transport.write(pending[0])
        else:
            self.transport.writelines(pending)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.ended = True
        self.transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, plus header-size, header-time, body-time and connection-count limits."""

    limits: ClassVar[HttpSettings]
    max_body_bytes: ClassVar[int]  # VAE_MAX_BODY_BYTES: past it, the rest of an answered request's body is not read
    unsent: ClassVar[Unsent]  # shared by the process's connections

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused = False  # answered and closing: what the client still sends is neither parsed nor kept
        self.in_headers = True  # from a request's first byte (or the connection's opening) to its headers' end
        self.head_open = False  # a request has begun and its headers have not ended
        self.in_body = False  # from the end of a request's headers to the end of its body
        self.header_bytes = 0  # bytes of the current request's line and headers so far
        self.header_tail = b""  # the last bytes of the previous chunk, where a CRLFCRLF may have begun
        self.header_started = 0.0  # monotonic time the connection opened, or the request's first byte came
        self.header_timer: asyncio.TimerHandle | None = None
        self.body_timer: asyncio.TimerHandle | None = None
        self.send_timer: asyncio.TimerHandle | None = None  # runs while the send buffer is full
        self.drain_timer: asyncio.TimerHandle | None = None  # runs from an early answer to the end of its body
        self.body_started = 0.0  # monotonic time the headers ended
        self.body_last = 0.0  # monotonic time of the body's latest bytes
        self.body_bytes = 0
        self.framing_bytes = 0  # body-phase bytes since the body's latest bytes that were not body (see data_received)
        self.trailer_bytes = 0  # the chunked body's trailer fields so far
        self.chunks = 0  # the chunked body's chunks so far
        self.draining = False  # the server is shutting down: this connection's next response is its last

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescedWrites(transport, self.loop))  # type: ignore[arg-type]
        if len(self.connections) > self.limits.max_connections:
            log.warning("refused a connection from %s: %d are open already", self.client, len(self.connections) - 1)
            detail = f"the server has {self.limits.max_connections} connections open (VAE_MAX_CONNECTIONS)"
            self.refuse(refusal(503, "too-many-connections", "Too many connections", detail, {"retry-after": "1"}))
            return
        self.header_started = time.monotonic()
        self.header_timer = self.loop.call_later(self.limits.header_timeout_s, self.headers_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.cancel_timers()
        self.unsent.remove(self)
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
        for timer in (self.header_timer, self.body_timer, self.send_timer, self.drain_timer):
            if timer is not None:
                timer.cancel()
        self.header_timer = self.body_timer = self.send_timer = self.drain_timer = None

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.in_headers:
            self.header_bytes += len(data)
            if self.header_bytes > self.limits.max_header_bytes and not self.headers_end_in_time(data):
                self.headers_too_large()
                return
            self.header_tail = data[-3:]
        elif self.in_body:
            body_before = self.body_bytes
            super().data_received(data)
            # Bytes of the body phase that carry no body: chunk framing and, after the last chunk, trailers,
            # which count against the header cap as headers do.
            self.framing_bytes = self.framing_bytes + len(data) if self.body_bytes == body_before else 0
            if self.in_body and self.framing_bytes > self.limits.max_header_bytes and not self.refused:
                self.trailers_too_large()
                return
            self.arm_timers()
            return
        super().data_received(data)
        self.arm_timers()

    def arm_timers(self) -> None:
        """What is still incomplete once the bytes at hand are parsed gets its clock."""
        if self.refused or self.transport.is_closing():
            return
        if self.head_open and self.header_timer is None:
            wait = self.header_started + self.limits.header_timeout_s - time.monotonic()
            self.header_timer = self.loop.call_later(max(0.0, wait), self.headers_timed_out)
        elif self.in_body and self.body_timer is None:
            self.body_timer = self.loop.call_later(max(0.0, self.body_deadline() - time.monotonic()), self.check_body)

    def headers_end_in_time(self, data: bytes) -> bool:
        """Whether the headers end in `data` within the limit (the rest of `data` is body, which does not count)."""
        end = (self.header_tail + data).find(b"\r\n\r\n")
        if end < 0:
            return False
        self.header_bytes += end + 4 - len(self.header_tail) - len(data)
        return self.header_bytes <= self.limits.max_header_bytes

    def headers_too_large(self) -> None:
        limit = self.limits.max_header_bytes
        log.info("refused a request from %s: headers over %d bytes", self.client, limit)
        detail = (
            f"the request line and headers exceed {limit} bytes (VAE_MAX_HEADER_BYTES); send large data in the body"
        )
        self.refuse(refusal(431, "headers-too-large", "Request header fields too large", detail))

    def trailers_too_large(self) -> None:
        limit = self.limits.max_header_bytes
        log.info("refused a request from %s: trailers or chunk framing over %d bytes", self.client, limit)
        detail = (
            f"the chunked body's framing and trailer fields exceed {limit} bytes (VAE_MAX_HEADER_BYTES); send "
            "fewer, larger chunks and no trailers"
        )
        self.refuse(refusal(431, "headers-too-large", "Request header fields too large", detail))

    def headers_timed_out(self) -> None:
        self.header_timer = None
        if self.header_bytes == 0 and self.cycle is None:
            self.transport.close()  # a connection that never sent a byte gets no answer
            return
        timeout = self.limits.header_timeout_s
        log.info("closed a connection from %s: headers unfinished after %g s", self.client, timeout)
        detail = f"the request's headers did not arrive within {timeout:g} s (VAE_HEADER_TIMEOUT_S)"
        self.refuse(refusal(408, "request-timeout", "Request timeout", detail))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_headers = self.head_open = True
        if self.header_timer is None:  # a later request's first byte: its deadline runs from now
            self.header_started = time.monotonic()

    def on_headers_complete(self) -> None:
        self.head_open = False
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        self.in_headers = False
        self.in_body = True
        self.header_bytes = 0
        self.header_tail = b""
        super().on_headers_complete()
        if self.draining:
            self.cycle.keep_alive = False
        self.body_started = self.body_last = time.monotonic()
        self.body_bytes = self.framing_bytes = self.trailer_bytes = self.chunks = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.in_body:  # a trailer field, after a chunked body: counted as headers are, never one of them
            self.trailer_bytes += len(name) + len(value) + 4
            if self.trailer_bytes > self.limits.max_header_bytes and not self.refused:
                self.trailers_too_large()
            return
        super().on_header(name, value)

    def on_chunk_header(self) -> None:
        self.chunks += 1
        if self.chunks > FREE_CHUNKS + self.body_bytes // MIN_CHUNK_BYTES and not self.refused:
            log.info(
                "refused a request from %s: %d chunks for %d bytes of body", self.client, self.chunks, self.body_bytes
            )
            detail = (
                f"the chunked body came in {self.chunks} chunks for {self.body_bytes} bytes; past {FREE_CHUNKS} "
                f"chunks they must average at least {MIN_CHUNK_BYTES} bytes: send larger chunks, or a Content-Length"
            )
            self.refuse(refusal(400, "chunks-too-small", "Bad request", detail))

    def on_body(self, body: bytes) -> None:
        if self.refused:
            return
        if self.cycle.response_complete:
            # Answered before its body ended (a 404 before the upload was read, say): the rest is read and
            # dropped, as far as a body may go, so that the connection can serve the next request; past that
            # (a refusal mid-upload of a body over the cap) the connection closes rather than read on.
            self.body_bytes += len(body)
            if self.body_bytes > self.max_body_bytes:
                self.linger()
            return
        self.body_bytes += len(body)
        self.body_last = time.monotonic()
        super().on_body(body)

    def linger(self) -> None:
        """The request was answered and its body runs past the cap: parse no more of it. The answer is out and
        the write side closes, so the client reads the answer to its end; what it still sends is dropped unparsed
        for at most LINGER_S, then the connection closes (closing at once could reset it before the client has
        read the answer)."""
        self.refused = True
        self.cancel_timers()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.in_body and not self.refused and self.drain_timer is None and not self.transport.is_closing():
            self.drain_timer = self.loop.call_later(DRAIN_S, self.drain_timed_out)

    def drain_timed_out(self) -> None:
        """The request was answered before its body ended, and the rest is slow to come: close (after LINGER_S,
        for the client to read its answer)."""
        self.drain_timer = None
        if self.in_body and self.cycle.response_complete and not self.refused:
            log.info(
                "closed a connection from %s: the body of an answered request still coming after %g s",
                self.client,
                DRAIN_S,
            )
            self.linger()

    def on_message_complete(self) -> None:
        if self.refused:
            return  # the rest of bytes parsed before the refusal: the request never completes
        for timer in (self.body_timer, self.drain_timer):
            if timer is not None:
                timer.cancel()
        self.body_timer = self.drain_timer = None
        self.in_body = False
        self.in_headers = True  # what comes next on this connection is the next request's headers
        super().on_message_complete()

    def body_deadline(self) -> float:
        """When the upload times out: `body_timeout_s` without a byte, too slow on average after that long, or
        `upload_timeout_s` after it began, however it goes."""
        idle = min(self.body_last + self.limits.body_timeout_s, self.body_started + self.limits.upload_timeout_s)
        rate = self.limits.min_body_bytes_per_s
        if rate == 0:
            return idle
        # The average rate since the headers falls below `rate` at body_started + body_bytes / rate.
        slow = self.body_started + max(self.limits.body_timeout_s, self.body_bytes / rate)
        return min(idle, slow)

    def check_body(self) -> None:
        if self.flow.read_paused:
            # uvicorn stopped reading (the app has not taken the body so far, or a pipelined request waits its
            # turn): the client cannot be slow while we do not read, so the clocks start again.
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
            f"{self.limits.body_timeout_s:g} s (VAE_BODY_TIMEOUT_S), must average at least "
            f"{self.limits.min_body_bytes_per_s} bytes/s (VAE_MIN_BODY_BYTES_PER_S) and must end within "
            f"{self.limits.upload_timeout_s:g} s (VAE_UPLOAD_TIMEOUT_S)"
        )
        self.refuse(refusal(408, "request-timeout", "Request timeout", detail))

    def pause_writing(self) -> None:
        """The send buffer is over its high-water mark: the client has this long to read it down again."""
        super().pause_writing()
        if self.send_timer is None:
            self.send_timer = self.loop.call_later(self.limits.send_timeout_s, self.not_reading)
        # An event loop may keep the whole of what was written, not only its unsent tail (uvloop holds the
        # objects it was given until they are sent): count the larger.
        writes = self.transport
        held = max(writes.get_write_buffer_size(), writes.flushed if isinstance(writes, CoalescedWrites) else 0)
        self.unsent.add(self, held)

    def resume_writing(self) -> None:
        super().resume_writing()
        self.unsent.remove(self)
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None

    def not_reading(self) -> None:
        """The client left its answer unread for send_timeout_s: drop the connection and what waits for it."""
        self.send_timer = None
        buffered = self.transport.get_write_buffer_size()
        self.drop(f"{buffered} bytes of answers unread for {self.limits.send_timeout_s:g} s (VAE_SEND_TIMEOUT_S)")

    def drop(self, why: str) -> None:
        """Close at once, freeing the answers that wait in the send buffer."""
        log.info("dropped a connection from %s: %s", self.client, why)
        self.unsent.remove(self)
        self.cancel_timers()
        self.refused = True
        self.transport.abort()
        self.unsent.give_back_memory(self.loop)

    def shutdown(self) -> None:
        """The server stops: finish the request in flight, then close; if idle, stay while others are in flight."""
        self.draining = True
        kept_alive = self.cycle is not None and self.cycle.response_complete
        if kept_alive and self.tasks:
            return  # closed by its keep-alive timer, or after its next response
        super().shutdown()


def guarded_protocol(limits: HttpSettings, max_body_bytes: int) -> type[GuardedHttpProtocol]:
    """The protocol class for uvicorn's `Config(http=...)`, with these limits."""
    attributes = {"limits": limits, "max_body_bytes": max_body_bytes, "unsent": Unsent(limits.max_unsent_bytes)}
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), attributes)


class SignalledServer(uvicorn.Server):
    """uvicorn's Server, calling `on_exit` when SIGTERM or SIGINT arrives (before it starts shutting down)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.on_exit()
        super().handle_exit(sig, frame)

    def stop(self) -> None:
        """Shut down as a signal would (the app could not start)."""
        self.should_exit = True

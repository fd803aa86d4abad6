"""ASGI middleware: a request-body size cap, and request metrics by route template and status."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import PayloadTooLarge, problem_response
from .metrics import Metrics

log = logging.getLogger(__name__)

# nginx's "client closed request": counted, never sent (there is nobody left to send it to).
CLIENT_CLOSED_REQUEST = 499


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes`: at once from Content-Length, else while the body streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, size: str) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body is {size}; the limit is {self.max_bytes} bytes (VAE_MAX_BODY_BYTES)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            error = self._too_large(f"{int(length)} bytes")
            response = problem_response(
                error.status, error.title, error.detail, slug=error.slug, instance=scope["path"]
            )
            response.headers["Connection"] = "close"  # the unread body must not be parsed as the next request
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the route's body read, so the app's error handler answers 413.
                    raise self._too_large(f"over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


class RequestMetricsMiddleware:
    """Count requests by route template (not raw path, to bound label cardinality), method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        # (route, method, status) -> its counter and histogram children: `labels()` costs a lock and a tuple
        # hash per call, and the keys are few (route templates, not paths).
        self.children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def _record(self, route: str, method: str, status: int, seconds: float) -> None:
        children = self.children.get((route, method, status))
        if children is None:
            children = self.children[(route, method, status)] = (
                self.metrics.requests.labels(route=route, method=method, status=str(status)),
                self.metrics.request_seconds.labels(route=route, method=method),
            )
        children[0].inc()
        children[1].observe(seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        except ClientDisconnect:
            # The client hung up before its body was read (or its upload stalled, service/connection.py): not a
            # failure of the service, so not a 500 with tracebacks, and not re-raised into uvicorn's error log.
            status = CLIENT_CLOSED_REQUEST
            log.info("%s %s: the client disconnected before sending its whole body", scope["method"], scope["path"])
        finally:
            template = getattr(scope.get("route"), "path", None) or "unmatched"
            self._record(template, scope.get("method", ""), status, time.perf_counter() - start)

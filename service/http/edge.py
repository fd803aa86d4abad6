"""The edge: one ASGI callable in front of both planes, so that every request meets the same rules.

For every request: the API key (when one is set), the declared body size, the method and the query parameters the
document declares, problem details for every refusal, and the request counted in /metrics by route template,
method and status. Then a data-plane route (found by its path, service/http/dataplane/) answers with a `Reply`, or
the control plane (FastAPI) answers itself. Everything here is public ASGI and Starlette API.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import tracing
from ..errors import InvalidInput, PayloadTooLarge, ServiceError, UnsupportedMediaType
from ..settings import LimitSettings
from .dataplane.routing import Match, RouteTable
from .document import PathTable
from .problems import error_reply, problem, unexpected
from .reply import Reply
from .request import DataRequest, too_large
from .request_id import HEADER, REQUEST_ID, request_id
from .security import is_open, key_matches, presented_key, unauthorized
from .state import ServiceState

log = logging.getLogger(__name__)

# nginx's "client closed request": counted, never sent (there is nobody left to send it to).
CLIENT_CLOSED_REQUEST = 499


class Edge:
    """ASGI app: the shared rules, then the data plane's route or the control plane."""

    def __init__(
        self,
        state: ServiceState,
        routes: RouteTable,
        control: ASGIApp,
        documented: Callable[[], PathTable],
        api_keys: tuple[bytes, ...],
        limits: LimitSettings,
    ) -> None:
        self.state = state
        self.routes = routes
        self.control = control
        self.documented = documented  # read once, on the first control request (the document is made then)
        self._paths: PathTable | None = None
        self.api_keys = api_keys
        self.max_body = limits.max_body_bytes
        self.requests = state.metrics.requests
        self.graphs = state.metrics.graphs  # its in-flight count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.control(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        found = self.routes.match(path)
        template = found.template if found is not None else None
        status = 500
        sent_id = None
        for name, value in scope["headers"]:
            if name == HEADER:
                sent_id = value
                break
        rid = request_id(sent_id)
        token = REQUEST_ID.set(rid)
        self.graphs.in_flight += 1
        traced = tracing.start_request(scope["method"], template, path, scope["headers"]) if tracing.TRACER else None
        try:
            if found is not None:
                status = await self._data(scope, receive, send, found, rid)
            else:
                status, template = await self._control(scope, receive, send, rid)
        finally:
            if traced is not None:
                tracing.end_request(*traced, status)
            self.graphs.in_flight -= 1
            REQUEST_ID.reset(token)
            self.requests.record(template or "unmatched", scope["method"], status, time.perf_counter() - start)

    def _refusal(self, scope: Scope, length: bytes | None, coded: bool) -> Reply | None:
        """What every request is refused for before it is read: no or a wrong key, a body declared too large, a
        compressed body (`coded`: the request names a Content-Encoding)."""
        path = scope["path"]
        if self.api_keys and not is_open(path):
            key = presented_key(scope["headers"])
            if key is None or not key_matches(key, self.api_keys):
                return unauthorized(path, key)
        if length is not None and length.isdigit() and int(length) > self.max_body:
            reply = error_reply(too_large(f"{int(length)} bytes", self.max_body), path)
            reply.headers = {**reply.headers, "Connection": "close"}  # the unread body is not a request
            return reply
        coding = _content_coding(scope["headers"]) if coded else None
        if coding is not None:
            # Read as it is, a gzip body would be refused as "not a PNG"; inflating it would let a few kilobytes
            # stand for gigabytes. RFC 7694: say which coding is accepted.
            error = UnsupportedMediaType(
                f"the request body is compressed (Content-Encoding: {coding}); the service reads uncompressed bodies "
                "only: send it without Content-Encoding"
            )
            reply = error_reply(error, path)
            reply.headers = {**reply.headers, "Accept-Encoding": "identity", "Connection": "close"}
            return reply
        return None

    async def _data(self, scope: Scope, receive: Receive, send: Send, found: Match, rid: str) -> int:
        path, method = scope["path"], scope["method"]
        length = content_type = accept = None
        coded = False
        for name, value in scope["headers"]:  # one pass for what the edge and every route read
            if name == b"content-length":
                length = value
            elif name == b"content-encoding":
                coded = True
            elif name == b"content-type":
                content_type = value
            elif name == b"accept":
                accept = value
        reply = self._refusal(scope, length, coded)
        if reply is None:
            route = found.methods.get(method)
            if route is None:
                reply = _not_allowed(method, path, found.methods)
            else:
                request = DataRequest(scope, receive, self.state, found.params, content_type, accept)
                try:
                    if route.json_body and request.media_type == "application/json":
                        await request.take_body_params(route.query)
                    reply = await route.handler(request)
                except ServiceError as e:
                    reply = error_reply(e, path)
                    if isinstance(e, PayloadTooLarge):
                        reply.headers = {**reply.headers, "Connection": "close"}
                except ClientDisconnect:
                    # The client hung up before its body was read (or its upload stalled): not a failure of the
                    # service, so no traceback, and nothing to answer.
                    log.info("%s %s: the client disconnected before sending its whole body", method, path)
                    return CLIENT_CLOSED_REQUEST
                except Exception:  # a defect: logged with its traceback; the client learns nothing internal
                    log.exception("unhandled error in %s %s", method, path)
                    reply = unexpected(path)
                finally:
                    request.release()
        await reply.send(send, head=method == "HEAD", request_id=rid)
        return reply.status

    async def _control(self, scope: Scope, receive: Receive, send: Send, rid: str) -> tuple[int, str | None]:
        path, method = scope["path"], scope["method"]
        if self._paths is None:
            self._paths = self.documented()
        documented = self._paths.find(path)
        template = documented[0] if documented is not None else None
        length = next((value for name, value in scope["headers"] if name == b"content-length"), None)
        reply = self._refusal(scope, length, any(name == b"content-encoding" for name, _ in scope["headers"]))
        if reply is None and documented is not None:
            reply = self._undeclared(scope, documented[1])
        if reply is not None:
            await reply.send(send, head=method == "HEAD", request_id=rid)
            return reply.status, template
        status = 500
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_body:  # raised inside the route's body read: its error handler answers 413
                raise too_large(f"over {self.max_body} bytes", self.max_body)
            return message

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (HEADER, rid.encode())]}
            elif head and message.get("body"):
                message = {**message, "body": b""}
            await send(message)

        # FastAPI's routes answer GET only; HEAD is the GET answer's status and headers (RFC 9110), as on the data
        # plane, so that HEAD health checks work.
        head = method == "HEAD"
        try:
            await self.control({**scope, "method": "GET"} if head else scope, limited, record_status)
        except ClientDisconnect:
            log.info("%s %s: the client disconnected before sending its whole body", method, path)
            status = CLIENT_CLOSED_REQUEST
        # Undocumented routes (the OIP's, the playground) are named by the route the framework matched.
        return status, template or getattr(scope.get("route"), "path", None)

    def _undeclared(self, scope: Scope, methods: dict[str, frozenset[str]]) -> Reply | None:
        """405 with every allowed method, or 422 naming unknown or repeated query parameters, on a documented control
        path."""
        method, path = scope["method"], scope["path"]
        if method not in methods:
            return _not_allowed(method, path, methods)
        unknown, repeated = _unknown_and_repeated(scope["query_string"], methods[method])
        if repeated:  # the framework would take the last one silently; the data plane refuses it alike
            name = repeated[0]
            error = InvalidInput(f"query parameter {name!r} is given more than once on {method} {path}; give it once")
            errors = [{"loc": ["query", name], "msg": "given more than once"}]
            return problem(error.status, error.title, error.detail, slug=error.slug, instance=path, errors=errors)
        if not unknown:
            return None
        names = ", ".join(repr(name) for name in unknown)
        known = ", ".join(sorted(methods[method])) or "none"
        error = InvalidInput(f"unknown query parameter {names} on {method} {path}; it accepts: {known} (see /docs)")
        errors = [{"loc": ["query", name], "msg": "unknown query parameter"} for name in unknown]
        return problem(error.status, error.title, error.detail, slug=error.slug, instance=path, errors=errors)


def _content_coding(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The Content-Encoding of a request that has a body, when it is not identity; else None (a GET that names a
    coding has nothing coded)."""
    codings, body = [], False
    for name, value in headers:
        if name == b"content-encoding":
            codings.append(value.decode("latin-1").strip())
        elif name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            body = True
    coding = ", ".join(c for c in codings if c and c.lower() != "identity")
    return coding if coding and body else None


def _not_allowed(method: str, path: str, methods: dict[str, Any]) -> Reply:
    allowed = ", ".join(sorted(methods))
    detail = f"{method} is not allowed on {path}; allowed: {allowed}"
    return problem(405, "Method not allowed", detail, instance=path, headers={"Allow": allowed})


def _unknown_and_repeated(query_string: bytes, known: frozenset[str]) -> tuple[list[str], list[str]]:
    """The query parameters that are not `known`, and the known ones given more than once."""
    if not query_string:
        return [], []
    sent = Counter(key for key, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
    return sorted(sent.keys() - known), sorted(key for key, times in sent.items() if times > 1 and key in known)

"""Errors as responses: RFC 9457 problem details (`application/problem+json`), the one mapping for both planes.

Domain errors (service/errors.py) carry their status; this module renders them as problem details (the control
plane's framework errors go through the same functions: service/http/control/errors.py). Under /v2 (the Open
Inference Protocol) the body is OIP's `{"error": detail}` instead, Triton's and KServe's clients read that field, and
invalid input is 400 (not 422), as the protocol says.
Every caller passes the request's path as `instance`, so this is the one place that chooses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import InvalidInput, NotReady, ServiceError
from .reply import Reply
from .request_id import REQUEST_ID

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_type(slug: str) -> str:
    return f"urn:vae-service:problem:{slug}"


def is_oip_path(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Reply:
    """One problem-details reply; `type` is about:blank for plain HTTP errors, a URN for the service's own."""
    if instance is not None and is_oip_path(instance):
        # OIP answers a request it cannot take with 400; the service's other routes say 422 for invalid input.
        status = 400 if status == 422 else status
        return Reply(status, "application/json", orjson.dumps({"error": detail}), dict(headers or {}))
    body: dict[str, Any] = {
        "type": problem_type(slug) if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    rid = REQUEST_ID.get()
    if rid is not None:
        body["request_id"] = rid  # the same as the X-Request-ID header and the log lines of the request
    body.update(extra)
    return Reply(status, PROBLEM_MEDIA_TYPE, orjson.dumps(body), dict(headers or {}))


def error_reply(error: ServiceError, path: str) -> Reply:
    """A domain error as the reply to the request at `path`."""
    if error.status >= 500 and not isinstance(error, NotReady):  # not ready: expected while loading or stopping
        log.warning("%s: %s", path, error.detail)
    return problem(
        error.status, error.title, error.detail, slug=error.slug, instance=path, headers=error.headers, **error.extra
    )


def unexpected(path: str) -> Reply:
    """A defect, not bad input: the client learns nothing internal (the caller logs the traceback)."""
    return problem(500, "Internal error", "the service failed on this request; the error is in its log", instance=path)


def location(loc: tuple[Any, ...]) -> str:
    """A validation error's location as text: ("query", "n") is "query parameter 'n'"."""
    where, *rest = loc or ("request",)
    name = ".".join(str(p) for p in rest)
    kind = {"query": "query parameter", "path": "path parameter", "header": "header", "body": "body field"}
    return f"{kind.get(str(where), str(where))} '{name}'" if name else str(where)


def invalid(errors: list[dict[str, Any]], path: str) -> Reply:
    """422 for validation errors (pydantic's shape: `loc` and `msg`), each named where it was."""
    listed = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")} for e in errors]
    detail = "; ".join(f"{location(tuple(e.get('loc', ())))}: {e.get('msg', '')}" for e in errors)
    return problem(
        422, InvalidInput.title, detail or "invalid request", slug=InvalidInput.slug, instance=path, errors=listed
    )

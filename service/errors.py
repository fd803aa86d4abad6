"""Domain errors and their single mapping to HTTP: RFC 9457 problem details (`application/problem+json`).

Core modules raise `ServiceError` subclasses and never touch HTTP; `install_error_handlers` is the one place
that turns them (and FastAPI's own validation and routing errors) into responses. Bad input never becomes a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


class StartupError(RuntimeError):
    """The service cannot start (no usable model, a required GPU missing...); the message says how to fix it."""


class ServiceError(Exception):
    """An error a client can act on; `status` is its HTTP status, `slug` names its problem type."""

    status = 500
    title = "Internal error"
    slug = "internal"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


class InvalidInput(ServiceError):
    status = 422
    title = "Invalid input"
    slug = "invalid-input"


class LabelRequired(InvalidInput):
    title = "Label required"
    slug = "label-required"


class Unauthorized(ServiceError):
    """No API key, or not one of the service's keys (only when VAE_API_KEY or VAE_API_KEY_FILE is set)."""

    status = 401
    title = "Unauthorized"
    slug = "unauthorized"


class PayloadTooLarge(ServiceError):
    status = 413
    title = "Payload too large"
    slug = "payload-too-large"


class UnsupportedMediaType(ServiceError):
    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class UnknownModel(ServiceError):
    status = 404
    title = "Unknown model"
    slug = "unknown-model"


class CapabilityMissing(ServiceError):
    """The request is well formed, but the model cannot do it (409: it conflicts with what the model is)."""

    status = 409
    title = "Model lacks this capability"
    slug = "capability-missing"


class NotGenerative(CapabilityMissing):
    title = "Model has no prior"
    slug = "not-generative"


class NotConditional(CapabilityMissing):
    title = "Model is not conditional"
    slug = "not-conditional"


class NotReady(ServiceError):
    status = 503
    title = "Not ready"
    slug = "not-ready"

    def __init__(self, detail: str, retry_after: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class Overloaded(ServiceError):
    """The inference queue is full: the service is saturated, not broken; the client should back off and retry."""

    status = 503
    title = "Overloaded"
    slug = "overloaded"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class DeadlineExceeded(Overloaded):
    """A request waited in the inference queue past its deadline and was dropped before it ran."""

    title = "Deadline exceeded"
    slug = "deadline-exceeded"


def problem_type(slug: str) -> str:
    return f"urn:vae-service:problem:{slug}"


def is_oip_path(path: str) -> bool:
    return path == "/v2" or path.startswith("/v2/")


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    slug: str | None = None,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """One problem-details body; `type` is about:blank for plain HTTP errors, a URN for the service's own.

    Under /v2 (the Open Inference Protocol, service/routes/v2.py) the body is OIP's `{"error": detail}` instead:
    Triton's and KServe's clients read that field. Every handler and middleware passes the path as `instance`, so
    this is the one place that chooses."""
    if instance is not None and is_oip_path(instance):
        return JSONResponse({"error": detail}, status_code=status, headers=headers)
    body: dict[str, Any] = {
        "type": problem_type(slug) if slug else "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _location(loc: tuple[Any, ...]) -> str:
    # FastAPI locations look like ("query", "n") or ("body", "z", 3): say "query parameter 'n'".
    where, *rest = loc or ("request",)
    name = ".".join(str(p) for p in rest)
    kind = {"query": "query parameter", "path": "path parameter", "header": "header", "body": "body field"}
    return f"{kind.get(str(where), str(where))} '{name}'" if name else str(where)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.status >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc.detail)
    return problem_response(
        exc.status, exc.title, exc.detail, slug=exc.slug, instance=request.url.path, headers=exc.headers, **exc.extra
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", "")} for e in exc.errors()]
    detail = "; ".join(f"{_location(tuple(e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors())
    return problem_response(
        422,
        InvalidInput.title,
        detail or "invalid request",
        slug=InvalidInput.slug,
        instance=request.url.path,
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no route {request.method} {request.url.path}; see /docs for the API"
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
    return problem_response(exc.status_code, title, detail, instance=request.url.path, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # A bug, not bad input: log it with its traceback, tell the client nothing internal.
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return problem_response(
        500, "Internal error", "the service failed on this request; the error is in its log", instance=request.url.path
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every error the app can raise to a problem-details response."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

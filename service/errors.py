"""Domain errors: what a client can act on, each with the HTTP status it maps to.

Core modules raise `ServiceError` subclasses and never touch HTTP; service/http/problems.py is the one place that
turns them into responses (RFC 9457 problem details). Bad input never becomes a 500.
"""

from __future__ import annotations

from typing import Any


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

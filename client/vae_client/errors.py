"""The one error the client raises for an answer that is not a success: the service's RFC 9457 problem detail."""

from __future__ import annotations

from typing import Any

import httpx


class ServiceError(Exception):
    """The service answered with an error status; the fields are its problem detail (RFC 9457).

    `detail` says what to change; `errors` lists the fields of a 422 validation error; `retry_after` is the
    seconds a 503 asks the caller to wait (None when absent); `body` is the raw response body. A proxy's answer
    that is not a problem detail keeps its status, the reason phrase as `title` and its text as `detail`.
    Network failures (nothing answered) are httpx's own `httpx.TransportError`.
    """

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        type: str = "about:blank",
        instance: str | None = None,
        errors: list[Any] | None = None,
        retry_after: float | None = None,
        body: bytes = b"",
    ) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type
        self.instance = instance
        self.errors = errors
        self.retry_after = retry_after
        self.body = body


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def error_from(response: httpx.Response) -> ServiceError:
    """The ServiceError for an error response, read from its problem-details body when it has one."""
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):
        problem = {}
    text = response.text.strip()
    return ServiceError(
        response.status_code,
        str(problem.get("title") or response.reason_phrase or "Error"),
        # {"error": ...} is how the /v2 routes (Open Inference Protocol) word their errors
        str(problem.get("detail") or problem.get("error") or text[:1000] or "(no detail)"),
        type=str(problem.get("type", "about:blank")),
        instance=problem.get("instance"),
        errors=problem.get("errors"),
        retry_after=_retry_after(response),
        body=response.content,
    )


def unexpected(response: httpx.Response, expected: str) -> ServiceError:
    """A ServiceError for a success status whose body is not what the route answers (a proxy's page, say)."""
    got = response.headers.get("content-type", "(none)")
    return ServiceError(
        response.status_code,
        "Unexpected response",
        f"{response.request.method} {response.request.url.path} answered {got}, not {expected}; "
        "is the URL that of the VAE service?",
        body=response.content,
    )

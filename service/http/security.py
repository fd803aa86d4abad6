"""The optional API key: keys from the settings, and what the edge (service/http/edge.py) answers without one.

Off unless VAE_API_KEY or VAE_API_KEY_FILE names at least one key. Then every request needs
`X-API-Key: KEY` or `Authorization: Bearer KEY`, except the probes and the scraper (/health, /ready,
/v2/health/live, /v2/health/ready, /metrics: Kubernetes and Prometheus send no key) and the API's documentation
(/docs, /redoc, /openapi.json and their assets) and the playground (/, /playground and its files): a browser
cannot add a header when it opens a page, the document tells nothing a client of the API does not learn anyway,
and Swagger's "Authorize" button (the playground's key field) then adds the key to every call it makes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable

from ..errors import StartupError, Unauthorized
from ..settings import HttpSettings
from .problems import problem
from .reply import Reply

OPEN_PATHS = frozenset({"/health", "/ready", "/metrics", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
OPEN_PATHS |= {
    "/v2/health/live",
    "/v2/health/ready",
}  # the Open Inference Protocol's probes (service/http/control/v2.py)
OPEN_PATHS |= {
    "/",
    "/playground",
}  # the playground page, which asks for the key itself (service/http/control/playground.py)
OPEN_PREFIXES = ("/static-offline-docs/", "/playground/")  # Swagger UI and ReDoc's files (fastapi-offline), the page's
API_KEY_HEADER = "X-API-Key"

_SEPARATORS = re.compile(r"[,\s]+")


def _digest(key: str | bytes) -> bytes:
    # Comparing fixed-length digests keeps compare_digest's time independent of the keys' lengths too.
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


def load_api_keys(settings: HttpSettings) -> tuple[bytes, ...]:
    """SHA-256 digests of the configured keys (none: no key is needed); StartupError for an unreadable file."""
    keys: list[str] = []
    if settings.api_key is not None:
        keys += _SEPARATORS.split(settings.api_key.get_secret_value())
    if settings.api_key_file is not None:
        path = settings.api_key_file
        try:
            text = path.read_text()
        except OSError as e:
            raise StartupError(
                f"VAE_API_KEY_FILE={path}: cannot read it ({e.strerror}); mount the file of keys there, "
                "or unset VAE_API_KEY_FILE"
            ) from None
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        file_keys = [line for line in lines if line]
        if not file_keys:
            raise StartupError(f"VAE_API_KEY_FILE={path} holds no key; write one key per line")
        keys += file_keys
    return tuple(_digest(key) for key in keys if key)


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request carries in X-API-Key, or as a bearer token in Authorization; None when neither."""
    for name, value in headers:
        if name == b"x-api-key":
            return value.strip()
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
    return None


def key_matches(key: bytes, digests: tuple[bytes, ...]) -> bool:
    """Whether `key` is one of the keys, comparing with every one in constant time (no early exit)."""
    digest = _digest(key)
    found = False
    for known in digests:
        found |= hmac.compare_digest(digest, known)
    return found


def is_open(path: str) -> bool:
    """Whether `path` is served without a key (probes, scraper, documentation, playground)."""
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def unauthorized(path: str, presented: bytes | None) -> Reply:
    """401 with problem details and WWW-Authenticate: no key, or not one of the service's."""
    if presented is None:
        detail = (
            f"this service needs an API key: send it as '{API_KEY_HEADER}: KEY' or 'Authorization: Bearer KEY' "
            "(in /docs: the Authorize button)"
        )
    else:
        detail = "the API key sent is not one of this service's keys; check it, or ask its operator for one"
    error = Unauthorized(detail)
    return problem(
        error.status,
        error.title,
        error.detail,
        slug=error.slug,
        instance=path,
        headers={"WWW-Authenticate": 'Bearer realm="vae-service"'},
    )

"""Each app's OpenAPI document: the limits of its settings, every status it can answer, its API-key scheme.

The routes' own documentation (service/openapi.py) is static; the limits (VAE_MAX_N, ...) and whether a key is
needed are per app, so they are written into the document here, once, on its first request.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from .openapi import ERRORS, LIMIT
from .security import API_KEY_HEADER, OPEN_PATHS
from .settings import Settings

# Query parameters bounded by a setting, by name (the same name means the same thing on every route).
QUERY_LIMITS: dict[str, dict[str, str]] = {
    "n": {"maximum": "max_n"},
    "samples": {"maximum": "max_samples"},
    "temperature": {"maximum": "max_temperature"},
    "steps": {"maximum": "max_steps"},
    "range": {"maximum": "max_range"},
    "scale": {"maximum": "max_scale"},
}
SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER, "description": "one of VAE_API_KEY"},
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY, one of VAE_API_KEY"},
}
_METHODS = ("get", "post", "put", "patch", "delete")


def install_openapi(app: FastAPI, settings: Settings, *, api_key: bool) -> None:
    """Make `app.openapi()` (and so /openapi.json, /docs) return the document completed for these settings."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            # A copy: FastAPI's document shares dicts with the routes' `openapi_extra`, which other apps reuse.
            document = copy.deepcopy(generate())
            complete(document, settings, api_key=api_key)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(document: dict[str, Any], settings: Settings, *, api_key: bool) -> None:
    """Fill in limits, the problem-details 422 every route can answer, and (with a key) 401 and the scheme."""
    _resolve_limits(document, settings)
    for path, operation in _operations(document):
        for parameter in operation.get("parameters", []):
            if parameter.get("in") == "query" and parameter["name"] in QUERY_LIMITS:
                parameter["schema"].update(_values(QUERY_LIMITS[parameter["name"]], settings))
        responses = operation.setdefault("responses", {})
        # Any route refuses an unknown query parameter (service/undeclared.py) with a problem detail, not
        # FastAPI's default {"detail": [...]} body.
        responses["422"] = ERRORS[422]
        if api_key:
            if path in OPEN_PATHS:
                operation["security"] = []
            else:
                responses["401"] = ERRORS[401]
    if api_key:
        document.setdefault("components", {})["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
        document["security"] = [{name: []} for name in SECURITY_SCHEMES]
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path, operation)
        for path, operations in document.get("paths", {}).items()
        for method, operation in operations.items()
        if method in _METHODS
    ]


def _values(limits: dict[str, str], settings: Settings) -> dict[str, Any]:
    return {keyword: getattr(settings, setting) for keyword, setting in limits.items()}


def _resolve_limits(node: Any, settings: Settings) -> None:
    """Replace every LIMIT marker by its keywords with the settings' values, in place."""
    if isinstance(node, dict):
        limits = node.pop(LIMIT, None)
        if limits is not None:
            node.update(_values(limits, settings))
        for value in node.values():
            _resolve_limits(value, settings)
    elif isinstance(node, list):
        for value in node:
            _resolve_limits(value, settings)

"""Refuse requests that the API does not declare: unknown query parameters (422) and methods (405).

What a route accepts is what its OpenAPI document lists, so the document and the behaviour cannot drift apart.
Without this, `?tempreature=0.5` was ignored silently, and a 405 on /generate (two routes, GET and POST) said
`Allow: GET`, the first route Starlette found. The table is built once, on the first request; after that a
request costs a dict lookup (and a parse of its query string, when it has one).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import InvalidInput, problem_response

_METHODS = ("get", "post", "put", "patch", "delete")
QueryNames = dict[str, frozenset[str]]  # method -> declared query parameter names


class RouteTable:
    """Per documented path: its methods and each method's query parameter names."""

    def __init__(self, openapi: dict[str, Any]) -> None:
        self.exact: dict[str, QueryNames] = {}
        self.templated: list[tuple[re.Pattern[str], QueryNames]] = []
        for path, operations in openapi.get("paths", {}).items():
            names = {
                method.upper(): frozenset(p["name"] for p in op.get("parameters", []) if p.get("in") == "query")
                for method, op in operations.items()
                if method in _METHODS
            }
            if "GET" in names:
                names["HEAD"] = names["GET"]  # Starlette answers HEAD on every GET route
            if "{" in path:
                self.templated.append((compile_path(path)[0], names))
            else:
                self.exact[path] = names

    def route(self, path: str) -> QueryNames | None:
        """The path's methods and parameters; None for a path the document does not describe (docs, 404s)."""
        names = self.exact.get(path)
        if names is None:
            names = next((names for pattern, names in self.templated if pattern.match(path)), None)
        return names


class UndeclaredRequestMiddleware:
    """405 with every allowed method; 422 naming the unknown query parameters and listing the known ones."""

    def __init__(self, app: ASGIApp, openapi: Callable[[], dict[str, Any]]) -> None:
        self.app = app
        self.openapi = openapi
        self.table: RouteTable | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.table is None:  # every route is mounted by the first request
            self.table = RouteTable(self.openapi())
        method, path = scope["method"], scope["path"]
        route = self.table.route(path)
        if route is None:
            await self.app(scope, receive, send)
        elif method not in route:
            allowed = ", ".join(sorted(route))
            detail = f"{method} is not allowed on {path}; allowed: {allowed}"
            response = problem_response(405, "Method not allowed", detail, instance=path, headers={"Allow": allowed})
            await response(scope, receive, send)
        elif unknown := _unknown(scope["query_string"], route[method]):
            names = ", ".join(repr(name) for name in unknown)
            known = ", ".join(sorted(route[method])) or "none"
            error = InvalidInput(f"unknown query parameter {names} on {method} {path}; it accepts: {known} (see /docs)")
            errors = [{"loc": ["query", name], "msg": "unknown query parameter"} for name in unknown]
            response = problem_response(
                error.status, error.title, error.detail, slug=error.slug, instance=path, errors=errors
            )
            await response(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _unknown(query_string: bytes, known: frozenset[str]) -> list[str]:
    if not query_string:
        return []
    sent = {key for key, _ in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)}
    return sorted(sent - known)

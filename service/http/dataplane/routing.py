"""Data-plane routes: declared with decorators (method, path, query model, documented body and answers), found by
a dictionary lookup on the path, or one pattern for the few paths with a parameter."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..query import Query
from ..reply import Reply
from ..request import DataRequest

Handler = Callable[[DataRequest], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # a template: /v2/models/{name}/infer
    handler: Handler
    query: type[Query]
    tags: tuple[str, ...] = ()
    body: dict[str, Any] | None = None  # the OpenAPI requestBody, with limit markers (service/http/openapi.py)
    responses: dict[int | str, dict[str, Any]] = field(default_factory=dict)
    documented: bool = True  # in the OpenAPI document (the OIP routes are specified by their own protocol)

    @property
    def name(self) -> str:
        return self.handler.__name__

    @property
    def json_body(self) -> bool:
        """Whether the route reads a JSON body of its own (which may carry its query parameters too)."""
        content = (self.body or {}).get("requestBody", {}).get("content", {})
        return self.documented and "application/json" in content


class Routes:
    """One module's routes, as FastAPI's APIRouter gathers them."""

    def __init__(self, tags: Iterable[str] = (), documented: bool = True) -> None:
        self.tags = tuple(tags)
        self.documented = documented
        self.routes: list[Route] = []

    def _add(self, method: str, path: str, **options: Any) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.routes.append(Route(method, path, handler, tags=self.tags, documented=self.documented, **options))
            return handler

        return register

    def get(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self._add("GET", path, **options)

    def post(self, path: str, **options: Any) -> Callable[[Handler], Handler]:
        return self._add("POST", path, **options)


@dataclass(frozen=True)
class Match:
    template: str
    methods: dict[str, Route]  # GET routes answer HEAD too
    params: dict[str, str]


class RouteTable:
    """Every data-plane route by path and method."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = list(routes)
        by_path: dict[str, dict[str, Route]] = {}
        for route in self.routes:
            methods = by_path.setdefault(route.path, {})
            if route.method in methods:
                raise ValueError(f"{route.method} {route.path} is declared twice")
            methods[route.method] = route
            if route.method == "GET":
                methods["HEAD"] = route
        self.exact = {path: Match(path, methods, {}) for path, methods in by_path.items() if "{" not in path}
        self.templated = [
            (re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "$"), path, methods)
            for path, methods in by_path.items()
            if "{" in path
        ]
        self.prefixes = tuple({path[: path.index("{")] for _, path, _ in self.templated})

    def match(self, path: str) -> Match | None:
        found = self.exact.get(path)
        if found is not None or not path.startswith(self.prefixes):
            return found
        for pattern, template, methods in self.templated:
            params = pattern.match(path)
            if params is not None:
                return Match(template, methods, params.groupdict())
        return None

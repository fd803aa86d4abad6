"""The app's one OpenAPI document: the control plane's routes as FastAPI describes them, the data plane's from their
declarations (query model, body, answers), the limits of this app's settings, and its API-key scheme.

The routes' own documentation (service/http/openapi.py, the query models) is static; the limits (VAE_MAX_N, ...)
and whether a key is needed are per app, so they are written into the document here, once, when it is first asked
for.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import compile_path

from ..settings import LimitSettings
from .dataplane.routing import Route
from .openapi import ERRORS
from .query import LIMIT
from .security import API_KEY_HEADER, OPEN_PATHS

SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": API_KEY_HEADER, "description": "one of VAE_API_KEY"},
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY, one of VAE_API_KEY"},
}
_METHODS = ("get", "post", "put", "patch", "delete")


def build(control: FastAPI, routes: Sequence[Route], limits: LimitSettings, *, api_key: bool) -> dict[str, Any]:
    """The whole document: data-plane operations first (the API), then the control plane's."""
    document = get_openapi(
        title=control.title, version=control.version, description=control.description, routes=control.routes
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.documented:
            paths.setdefault(route.path, {})[route.method.lower()] = operation(route)
    document["paths"] = {**paths, **document.get("paths", {})}
    complete(document, limits, api_key=api_key)
    return document


def operation(route: Route) -> dict[str, Any]:
    """One data-plane operation, described as FastAPI describes its own (summary, operationId, parameters)."""
    doc = (route.handler.__doc__ or "").strip()
    summary = " ".join(word.capitalize() for word in route.name.split("_"))
    path_id = re.sub(r"\W", "_", route.path)
    op: dict[str, Any] = {
        "tags": list(route.tags),
        "summary": summary,
        "description": doc,
        "operationId": f"{route.name}{path_id}_{route.method.lower()}",
        "parameters": parameters(route),
    }
    if route.body is not None:
        op.update(copy.deepcopy(route.body))
        if route.json_body:
            _body_params(op, route)
    op["responses"] = {str(status): copy.deepcopy(answer) for status, answer in route.responses.items()}
    return op


def _body_params(op: dict[str, Any], route: Route) -> None:
    """A JSON body may carry the query's parameters too (service/http/body_params.py): its schema says so."""
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    properties = schema.setdefault("properties", {})
    for parameter in parameters(route):
        prop = copy.deepcopy(parameter["schema"])
        if prop.get("type") == "array" and prop.get("items", {}).get("type") == "string":
            prop["items"] = {"anyOf": [{"type": "string"}, {"type": "number"}]}  # label indices, strengths
        prop["description"] = f"as the query parameter '{parameter['name']}' (give it in one place)"
        properties.setdefault(parameter["name"], prop)


def parameters(route: Route) -> list[dict[str, Any]]:
    """The query model's fields as OpenAPI query parameters (limit markers still in place)."""
    schema = route.query.model_json_schema(by_alias=True)
    listed = []
    for attribute, info in route.query.model_fields.items():
        name = info.alias or attribute
        prop = dict(schema["properties"][name])
        if prop.get("default", 0) is None:  # FastAPI leaves a null default out
            del prop["default"]
        parameter = {"name": name, "in": "query", "required": info.is_required(), "schema": prop}
        if "description" in prop:
            parameter["description"] = prop["description"]
        listed.append(parameter)
    return listed


def complete(document: dict[str, Any], limits: LimitSettings, *, api_key: bool) -> None:
    """Fill in limits, the problem-details 422 every route can answer, and (with a key) 401 and the scheme."""
    _resolve_limits(document, limits)
    for path, op in _operations(document):
        responses = op.setdefault("responses", {})
        # Any route refuses an unknown query parameter with a problem detail, not FastAPI's {"detail": [...]}.
        responses["422"] = copy.deepcopy(ERRORS[422])
        if api_key:
            if path in OPEN_PATHS:
                op["security"] = []
            else:
                responses["401"] = copy.deepcopy(ERRORS[401])
    if api_key:
        document.setdefault("components", {})["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
        document["security"] = [{name: []} for name in SECURITY_SCHEMES]
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    if "components" in document and not document["components"].get("schemas", True):
        del document["components"]["schemas"]


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path, op)
        for path, operations in document.get("paths", {}).items()
        for method, op in operations.items()
        if method in _METHODS
    ]


class PathTable:
    """Per documented path (templates matched as Starlette matches them): per method (HEAD with GET), the query
    parameters it declares."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.exact: dict[str, dict[str, frozenset[str]]] = {}
        self.templated: list[tuple[re.Pattern[str], str, dict[str, frozenset[str]]]] = []
        for path, operations in document.get("paths", {}).items():
            names = {
                method.upper(): frozenset(p["name"] for p in op.get("parameters", []) if p.get("in") == "query")
                for method, op in operations.items()
                if method in _METHODS
            }
            if "GET" in names:
                names["HEAD"] = names["GET"]  # Starlette answers HEAD on every GET route
            if "{" in path:
                self.templated.append((compile_path(path)[0], path, names))
            else:
                self.exact[path] = names

    def find(self, path: str) -> tuple[str, dict[str, frozenset[str]]] | None:
        """The documented template of `path` and its methods' query names; None for a path not documented."""
        names = self.exact.get(path)
        if names is not None:
            return path, names
        return next(((template, names) for pattern, template, names in self.templated if pattern.match(path)), None)


def _resolve_limits(node: Any, limits: LimitSettings) -> None:
    """Replace every LIMIT marker by its keywords with the settings' values, in place."""
    if isinstance(node, dict):
        marker = node.pop(LIMIT, None)
        if marker is not None:
            node.update({keyword: getattr(limits, setting) for keyword, setting in marker.items()})
        for value in node.values():
            _resolve_limits(value, limits)
    elif isinstance(node, list):
        for value in node:
            _resolve_limits(value, limits)

"""Routes whose dependencies and query parameters are solved by a plan made once, not searched on every request.

FastAPI solves a route's parameters generically per request: it walks the dependency tree, looks up each field's
kind and annotation, and builds the lookups again (a profile of /encode under load had `solve_dependencies` at
18-37% of the service's CPU). `CompiledRoute` keeps FastAPI's declaration, the same `dependant` (so the OpenAPI
document does not change), and answers with a plan made when the route is mounted: for each dependency, in the
order FastAPI calls them, the query fields it takes and where its other arguments come from. Query values are
validated by FastAPI's own fields (`ModelField.validate`), so values, defaults and 422 messages are the same.
A route the plan does not cover (a body, header, cookie or path parameter, a sync or generator dependency, a
response model, security scopes) keeps FastAPI's handler.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi._compat import field_annotation_is_sequence, get_missing_field_error
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


@dataclass(frozen=True)
class _Query:
    """One query parameter: its argument name, the name in the URL, FastAPI's field, and whether it repeats."""

    name: str
    alias: str
    field: Any  # fastapi's ModelField: `.validate(value, loc=...)` -> (value, errors)
    many: bool
    required: bool
    default: Any


@dataclass(frozen=True)
class _Step:
    """One call in the plan: a dependency or the endpoint, with where each of its arguments comes from."""

    call: Callable[..., Awaitable[Any]]
    request: str | None  # the parameter that takes the Request
    queries: tuple[_Query, ...]
    needs: tuple[tuple[str, _Step], ...]  # parameter -> the dependency whose result it takes


def _plan(dependant: Dependant) -> _Step | None:
    """The dependant as a `_Step`, or None when it uses something the plan does not cover."""
    unsupported = (
        dependant.path_params,
        dependant.header_params,
        dependant.cookie_params,
        dependant.body_params,
        dependant.websocket_param_name,
        dependant.http_connection_param_name,
        dependant.response_param_name,
        dependant.background_tasks_param_name,
        dependant.security_scopes_param_name,
        dependant.own_oauth_scopes,
    )
    if any(unsupported) or dependant.call is None or not inspect.iscoroutinefunction(dependant.call):
        return None
    needs = []
    for sub in dependant.dependencies:
        step = _plan(sub)
        if step is None or sub.name is None or not sub.use_cache:
            return None
        needs.append((sub.name, step))
    queries = tuple(
        _Query(
            name=f.name,
            alias=f.alias,
            field=f,
            many=field_annotation_is_sequence(f.field_info.annotation),
            required=f.field_info.is_required(),
            default=f.default,
        )
        for f in dependant.query_params
    )
    return _Step(dependant.call, dependant.request_param_name, queries, tuple(needs))


async def _arguments(
    step: _Step, request: Request, results: dict[Any, Any], errors: list[Any]
) -> dict[str, Any] | None:
    """`step`'s keyword arguments, calling its dependencies first (each once per request, as FastAPI caches them);
    None when a query value was invalid (its errors are added to `errors`, as FastAPI gathers them)."""
    arguments: dict[str, Any] = {}
    failed = False
    for name, sub in step.needs:
        if sub.call not in results:
            sub_arguments = await _arguments(sub, request, results, errors)
            if sub_arguments is None:
                failed = True
                continue
            results[sub.call] = await sub.call(**sub_arguments)
        arguments[name] = results[sub.call]
    params = request.query_params
    for q in step.queries:
        value = params.getlist(q.alias) if q.many else params.get(q.alias)
        if value is None or (q.many and not value):
            if q.required:
                errors.append(get_missing_field_error(("query", q.alias)))
                failed = True
            else:
                arguments[q.name] = q.default  # defaults are immutable here (None, numbers)
            continue
        value, problems = q.field.validate(value, loc=("query", q.alias))
        if problems:
            errors.extend(problems)
            failed = True
        else:
            arguments[q.name] = value
    if step.request is not None:
        arguments[step.request] = request
    return None if failed else arguments


def compile_handler(dependant: Dependant) -> Handler | None:
    """A request handler that solves `dependant` by plan; None when the plan does not cover it."""
    plan = _plan(dependant)
    if plan is None:
        return None

    async def handle(request: Request) -> Response:
        errors: list[Any] = []
        arguments = await _arguments(plan, request, {}, errors)
        if arguments is None:
            raise RequestValidationError(errors)
        response = await plan.call(**arguments)
        if not isinstance(response, Response):  # every compiled route returns its Response itself
            raise TypeError(f"{plan.call.__name__} returned {type(response).__name__}, not a Response")
        return response

    return handle


class CompiledRoute(APIRoute):
    """An APIRoute answered by `compile_handler`'s plan where it covers the route, else by FastAPI's handler."""

    def get_route_handler(self) -> Handler:
        # The plan calls the declared dependencies: `app.dependency_overrides` is not consulted (none is used).
        fallback = super().get_route_handler()
        if self.response_field is not None:
            return fallback
        return compile_handler(self.dependant) or fallback

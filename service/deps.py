"""Typed FastAPI dependencies: what a route needs, taken from the app's state and the request's query."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Query, Request

from .errors import NotReady
from .metrics import Metrics as _Metrics
from .model import ServedModel
from .openapi import EXAMPLE_MODEL
from .registry import ModelRegistry
from .settings import Settings as _Settings


async def get_settings(request: Request) -> _Settings:
    return request.app.state.settings


async def get_metrics(request: Request) -> _Metrics:
    return request.app.state.metrics


def loaded_registry(request: Request) -> ModelRegistry:
    """The loaded registry; NotReady (503) until start-up has loaded and warmed every model."""
    registry = getattr(request.app.state, "registry", None)
    if registry is None:
        raise NotReady("the service is starting or stopping; models are not loaded yet, retry shortly")
    return registry


async def get_registry(request: Request) -> ModelRegistry:
    return loaded_registry(request)


def begin_shutdown(app: FastAPI) -> None:
    """From now on /ready answers 503, so that a load balancer sends no new requests; the others still work."""
    app.state.shutting_down = True


def shutting_down(app: FastAPI) -> bool:
    return getattr(app.state, "shutting_down", False)


async def get_ready_registry(request: Request) -> ModelRegistry:
    """The loaded registry, unless shutdown has begun: NotReady (503) then as well."""
    if shutting_down(request.app):
        raise NotReady("the service is shutting down; send requests to another instance")
    return loaded_registry(request)


Settings = Annotated[_Settings, Depends(get_settings)]
Metrics = Annotated[_Metrics, Depends(get_metrics)]
Registry = Annotated[ModelRegistry, Depends(get_registry)]
ReadyRegistry = Annotated[ModelRegistry, Depends(get_ready_registry)]


async def get_model(
    request: Request,
    model: Annotated[
        str | None,
        Query(description="model name (see GET /models); the default model when omitted", examples=[EXAMPLE_MODEL]),
    ] = None,
) -> ServedModel:
    """The model named by `?model=`, or the default one; 404 for a name that is not loaded."""
    # The registry is read here rather than through the Registry dependency: each nested dependency costs
    # FastAPI tens of microseconds per request, on the routes where that matters most.
    return loaded_registry(request).get(model)


Model = Annotated[ServedModel, Depends(get_model)]

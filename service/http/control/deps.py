"""Typed FastAPI dependencies of the control plane: the process's shared state and the registry it holds."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ...models.registry import ModelRegistry
from ..state import ServiceState


async def get_state(request: Request) -> ServiceState:
    return request.app.state.service


StateDep = Annotated[ServiceState, Depends(get_state)]


async def get_registry(state: StateDep) -> ModelRegistry:
    """The loaded registry; 503 until start-up has loaded and warmed every model."""
    return state.loaded_registry()


async def get_ready_registry(state: StateDep) -> ModelRegistry:
    """The loaded registry, unless shutdown has begun (503 then as well)."""
    return state.ready_registry()


RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
ReadyRegistryDep = Annotated[ModelRegistry, Depends(get_ready_registry)]

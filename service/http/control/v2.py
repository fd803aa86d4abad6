"""The Open Inference Protocol v2's control routes (server and model metadata, health, readiness) and Triton's
model repository API.

Inference (`/v2/models/{name}/infer`) is a data-plane route (service/http/dataplane/oip.py). Errors are
`{"error": ...}` (service/http/problems.py chooses that body for every path under /v2). The routes stay out of the
OpenAPI document: the protocol is specified by its own (kserve/open-inference-protocol).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ...engine.chain import Chain
from ...models.model import ServedModel
from ...models.repository import ModelRepository
from ...models.versions import newest_first
from ..dataplane.oip import ROLES, WHOLE, graph_of, tensors_of
from ..oip import InvalidTensor, metadata_tensor
from ..state import ServiceState
from .deps import ReadyRegistryDep, RegistryDep, StateDep

router = APIRouter(prefix="/v2", include_in_schema=False)

EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics"]
PLATFORM = "onnx_onnxv1"  # Triton's name for a model served by onnxruntime


@router.get("")
async def server_metadata(request: Request) -> dict[str, Any]:
    """$metadata_server_response."""
    return {"name": "vae-service", "version": request.app.version, "extensions": EXTENSIONS}


@router.get("/health/live")
async def live() -> dict[str, bool]:
    """$live_server_response: 200 whenever the process answers."""
    return {"live": True}


@router.get("/health/ready")
async def ready(registry: ReadyRegistryDep) -> dict[str, bool]:
    """$ready_server_response: 200 once every model is loaded and warm; 503 `{"error": ...}` before and at shutdown."""
    return {"ready": True}


@router.get("/models/stats")
async def all_statistics(state: StateDep, registry: RegistryDep) -> dict[str, Any]:
    """The statistics extension (Triton's shape): every graph of every loaded model, times in ns since start."""
    return {
        "model_stats": [
            _statistics(state, model, role)
            for model in sorted(registry.served(), key=lambda m: (m.name, m.version))
            for role in (WHOLE, *ROLES)
        ]
    }


def _statistics(state: ServiceState, model: ServedModel, role: str) -> dict[str, object]:
    """One OIP model's entry: the bare name is the whole model, whose requests run the encoder-decoder chain."""
    if role == WHOLE:
        return state.metrics.graphs.graph(model.name, model.version, Chain.graph).triton(model.name)
    return state.metrics.graphs.graph(model.name, model.version, role).triton(f"{model.name}.{role}")


@router.get("/models/{name}")
@router.get("/models/{name}/versions/{version}")
async def model_metadata(registry: RegistryDep, name: str, version: str | None = None) -> dict[str, Any]:
    """$metadata_model_response: OIP datatypes, -1 for the batch axis."""
    model, role = graph_of(registry, name, version)
    inputs, outputs = tensors_of(model, role)
    return {
        "name": name,
        "versions": newest_first(registry.versions[model.name]) if version is None else [model.version],
        "platform": PLATFORM,
        "inputs": [metadata_tensor(t) for t in inputs],
        "outputs": [metadata_tensor(t) for t in outputs],
    }


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
async def model_ready(registry: ReadyRegistryDep, name: str, version: str | None = None) -> dict[str, Any]:
    """$ready_model_response: 200 while the model is loaded; 404 `{"error": ...}` for one that is not."""
    graph_of(registry, name, version)
    return {"name": name, "ready": True}


@router.get("/models/{name}/stats")
@router.get("/models/{name}/versions/{version}/stats")
async def model_statistics(
    state: StateDep, registry: RegistryDep, name: str, version: str | None = None
) -> dict[str, Any]:
    """The statistics extension for one OIP model (`<model>`, `<model>.encoder` or `<model>.decoder`): Triton's
    `model_stats`."""
    model, role = graph_of(registry, name, version)
    return {"model_stats": [_statistics(state, model, role)]}


# --- the model repository extension (Triton's): the names here are model folders -------------------------------


def _repository(state: StateDep) -> ModelRepository:
    state.loaded_registry()  # 503 until start-up is done
    assert state.repository is not None
    return state.repository


@router.post("/repository/index")
async def repository_index(state: StateDep) -> list[dict[str, str]]:
    """Every model folder: `name`, `version`, `state` (READY or UNAVAILABLE) and, when not ready, `reason`."""
    return [
        {"name": s.name, "version": s.version, "state": s.state, **({"reason": s.reason} if s.reason else {})}
        for s in _repository(state).index()
    ]


@router.post("/repository/models/{name}/load")
async def repository_load(request: Request, state: StateDep, name: str) -> dict[str, Any]:
    """Load or reload a model folder, validated and warmed before it serves (VAE_MODEL_CONTROL=explicit)."""
    await _no_files(request)
    await _repository(state).load(name)
    return {}


@router.post("/repository/models/{name}/unload")
async def repository_unload(state: StateDep, name: str) -> dict[str, Any]:
    """Stop serving a model folder once its requests in flight are done (VAE_MODEL_CONTROL=explicit)."""
    await _repository(state).unload(name)
    return {}


async def _no_files(request: Request) -> None:
    # Triton's load can carry a config and model files in its parameters; here a model is only ever what its
    # folder holds, so that the service reads nothing from outside the models directory.
    body = await request.body()
    if b'"config"' in body or b'"file:' in body:
        raise InvalidTensor("loading a model from a config or files in the request is not supported")

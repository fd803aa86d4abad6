"""The Open Inference Protocol v2 over REST (KServe's and Triton's HTTP API) and Triton's model repository API.

Each model's graphs are OIP models `<model>.encoder` and `<model>.decoder`, with the manifest's tensor names.
Inference goes through the same batchers, limits and API key as the service's own routes; errors are
`{"error": ...}` (service/errors.py chooses that body for every path under /v2). The routes stay out of the
OpenAPI document: the protocol is specified by its own (kserve/open-inference-protocol), and a body that is a JSON
header followed by binary tensors is nothing OpenAPI can describe, nor schemathesis fuzz meaningfully.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from vaeformat.manifest import GraphFile

from ..deps import ReadyRegistry, Registry, Settings, loaded_registry
from ..errors import UnknownModel, UnsupportedMediaType
from ..model import ServedModel
from ..offload import cpu_bound
from ..oip import HEADER_LENGTH, InvalidTensor, check_labels, metadata_tensor, parse_request, render_response
from ..registry import ModelRegistry
from ..repository import InFlight, ModelRepository

router = APIRouter(prefix="/v2", include_in_schema=False)

EXTENSIONS = ["binary_tensor_data", "model_repository"]
ROLES = ("encoder", "decoder")
PLATFORM = "onnx_onnxv1"  # Triton's name for a model served by onnxruntime


def _graph(registry: ModelRegistry, name: str, version: str | None) -> tuple[ServedModel, str]:
    """`<model>.encoder` or `<model>.decoder` (and, when given, its version); UnknownModel (404) otherwise."""
    base, _, role = name.rpartition(".")
    model = registry.models.get(base) if role in ROLES else None
    if model is None:
        names = sorted(f"{m}.{r}" for m in registry.models for r in ROLES)
        raise UnknownModel(f"no model named {name!r}; the models here are {names}")
    if version is not None and version != model.manifest.version:
        raise UnknownModel(f"model {name!r} has version {model.manifest.version!r}, not {version!r}")
    return model, role


def _files(model: ServedModel, role: str) -> GraphFile:
    return model.manifest.files.encoder if role == "encoder" else model.manifest.files.decoder


@router.get("")
async def server_metadata(request: Request) -> dict[str, Any]:
    """$metadata_server_response."""
    return {"name": "vae-service", "version": request.app.version, "extensions": EXTENSIONS}


@router.get("/health/live")
async def live() -> dict[str, bool]:
    """$live_server_response: 200 whenever the process answers."""
    return {"live": True}


@router.get("/health/ready")
async def ready(registry: ReadyRegistry) -> dict[str, bool]:
    """$ready_server_response: 200 once every model is loaded and warm; 503 `{"error": ...}` before and at shutdown."""
    return {"ready": True}


@router.get("/models/{name}")
@router.get("/models/{name}/versions/{version}")
async def model_metadata(registry: Registry, name: str, version: str | None = None) -> dict[str, Any]:
    """$metadata_model_response: OIP datatypes, -1 for the batch axis."""
    model, role = _graph(registry, name, version)
    files = _files(model, role)
    return {
        "name": name,
        "versions": [model.manifest.version],
        "platform": PLATFORM,
        "inputs": [metadata_tensor(t) for t in files.inputs],
        "outputs": [metadata_tensor(t) for t in files.outputs],
    }


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
async def model_ready(registry: ReadyRegistry, name: str, version: str | None = None) -> dict[str, Any]:
    """$ready_model_response: 200 while the model is loaded; 404 `{"error": ...}` for one that is not."""
    _graph(registry, name, version)
    return {"name": name, "ready": True}


@router.post("/models/{name}/infer")
@router.post("/models/{name}/versions/{version}/infer")
async def infer(request: Request, settings: Settings, name: str, version: str | None = None) -> Response:
    """$inference_request -> $inference_response, JSON or with binary tensors (both ways)."""
    model, role = _graph(loaded_registry(request), name, version)
    if request.headers.get("content-encoding", "identity").lower() != "identity":
        raise UnsupportedMediaType("compressed request bodies are not accepted; send the body uncompressed")
    files = _files(model, role)
    rows, setting = (
        (settings.max_images, "VAE_MAX_IMAGES") if role == "encoder" else (settings.max_latents, "VAE_MAX_LATENTS")
    )
    in_flight: InFlight = request.app.state.in_flight
    with in_flight.hold(model):  # an unload of this model waits for this request
        body = await request.body()
        header_length = request.headers.get(HEADER_LENGTH)
        parsed = await cpu_bound(
            parse_request, body, header_length, files.inputs, files.outputs, rows, setting, nbytes=len(body)
        )
        check_labels(parsed.feeds, len(model.class_names))
        runner = model.encoder if role == "encoder" else model.decoder
        arrays = await runner(parsed.outputs, parsed.feeds)
    numbers = sum(a.size for a in arrays)
    content, headers, media_type = await cpu_bound(
        render_response, name, model.manifest.version, parsed, arrays, nbytes=numbers * 4
    )
    return Response(content, headers=headers, media_type=media_type)


# --- the model repository extension (Triton's): the names here are model folders -------------------------------


def _repository(request: Request) -> ModelRepository:
    loaded_registry(request)  # 503 until start-up is done
    return request.app.state.repository


@router.post("/repository/index")
async def repository_index(request: Request) -> list[dict[str, str]]:
    """Every model folder: `name`, `version`, `state` (READY or UNAVAILABLE) and, when not ready, `reason`."""
    states = _repository(request).index()
    return [
        {"name": s.name, "version": s.version, "state": s.state, **({"reason": s.reason} if s.reason else {})}
        for s in states
    ]


@router.post("/repository/models/{name}/load")
async def repository_load(request: Request, name: str) -> dict[str, Any]:
    """Load or reload a model folder, validated and warmed before it serves (VAE_MODEL_CONTROL=explicit)."""
    await _no_files(request)
    await _repository(request).load(name)
    return {}


@router.post("/repository/models/{name}/unload")
async def repository_unload(request: Request, name: str) -> dict[str, Any]:
    """Stop serving a model folder once its requests in flight are done (VAE_MODEL_CONTROL=explicit)."""
    await _repository(request).unload(name)
    return {}


async def _no_files(request: Request) -> None:
    # Triton's load can carry a config and model files in its parameters; here a model is only ever what its
    # folder holds, so that the service reads nothing from outside the models directory.
    body = await request.body()
    if b'"config"' in body or b'"file:' in body:
        raise InvalidTensor("loading a model from a config or files in the request is not supported")

"""POST /v2/models/{name}/infer (and .../versions/{version}/infer): the Open Inference Protocol's inference.

Each model's graphs are OIP models `<model>.encoder` and `<model>.decoder`, with the manifest's tensor names. A
request goes through the same batchers, limits and API key as the service's own routes; its answer is rendered on
the batch's worker thread. Errors are `{"error": ...}` (service/http/problems.py chooses that body under /v2). The
route stays out of the OpenAPI document: the protocol is specified by its own (kserve/open-inference-protocol).
"""

from __future__ import annotations

from ...engine.runner import Feeds, Job, Outputs
from ...errors import UnknownModel, UnsupportedMediaType
from ...models.model import ServedModel
from ...models.registry import ModelRegistry
from ..offload import cpu_bound
from ..oip import HEADER_LENGTH, InferRequest, check_labels, check_response_size, parse_request, render_response
from ..query import Query
from ..reply import Reply
from ..request import DataRequest
from .routing import Routes

routes = Routes(documented=False)
ROLES = ("encoder", "decoder")


def graph_of(registry: ModelRegistry, name: str, version: str | None) -> tuple[ServedModel, str]:
    """`<model>.encoder` or `<model>.decoder` (and, when given, its version); UnknownModel (404) otherwise."""
    base, _, role = name.rpartition(".")
    model = registry.models.get(base) if role in ROLES else None
    if model is None:
        names = sorted(f"{m}.{r}" for m in registry.models for r in ROLES)
        raise UnknownModel(f"no model named {name!r}; the models here are {names}")
    if version is not None and version != model.manifest.version:
        raise UnknownModel(f"model {name!r} has version {model.manifest.version!r}, not {version!r}")
    return model, role


class InferQuery(Query):
    """No query parameters: the request says everything in its body."""


@routes.post("/v2/models/{name}/infer", query=InferQuery)
@routes.post("/v2/models/{name}/versions/{version}/infer", query=InferQuery)
async def infer(request: DataRequest) -> Reply:
    """$inference_request -> $inference_response, JSON or with binary tensors (both ways)."""
    request.query(InferQuery)
    params = request.path_params
    model, role = graph_of(request.registry, params["name"], params.get("version"))
    if (request.header(b"content-encoding") or "identity").lower() != "identity":
        raise UnsupportedMediaType("compressed request bodies are not accepted; send the body uncompressed")
    limits = request.state.limits
    files = model.manifest.files.encoder if role == "encoder" else model.manifest.files.decoder
    rows, setting = (
        (limits.max_images, "VAE_MAX_IMAGES") if role == "encoder" else (limits.max_latents, "VAE_MAX_LATENTS")
    )
    with request.state.in_flight.hold(model):  # an unload of this model waits for this request
        body = await request.body()
        header_length = request.header(HEADER_LENGTH.lower().encode())
        parsed = await cpu_bound(
            parse_request, body, header_length, files.inputs, files.outputs, rows, setting, nbytes=len(body)
        )
        check_labels(parsed.feeds, len(model.class_names))
        first = next(iter(parsed.feeds.values()))
        check_response_size(parsed, files.outputs, len(first), limits.max_response_bytes)
        runner = model.encoder if role == "encoder" else model.decoder
        name, version = params["name"], model.manifest.version

        def finish(_: Feeds, arrays: Outputs) -> Reply:
            return _reply(name, version, parsed, arrays)

        return await runner.run(Job(len(first), parsed.outputs, parsed.feeds, finish))


def _reply(name: str, version: str, parsed: InferRequest, arrays: Outputs) -> Reply:
    content, headers, media_type = render_response(name, version, parsed, arrays)
    return Reply(200, media_type, content, headers)

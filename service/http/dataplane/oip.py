"""POST /v2/models/{name}/infer (and .../versions/{version}/infer): the Open Inference Protocol's inference.

Each model is three OIP models: `<model>` (image in, its reconstruction out: the name the repository index lists),
`<model>.encoder` and `<model>.decoder`, with the manifest's tensor names; a version in the path picks one of
the model's served versions, its newest without. A
request goes through the same batchers, limits and API key as the service's own routes; its answer is rendered on
the batch's worker thread. Errors are `{"error": ...}` (service/http/problems.py chooses that body under /v2). The
route stays out of the OpenAPI document: the protocol is specified by its own (kserve/open-inference-protocol).
"""

from __future__ import annotations

from vaeformat.manifest import TensorSpec

from ...engine.runner import Feeds, Job, Outputs
from ...errors import UnknownModel
from ...models.model import ServedModel
from ...models.registry import ModelRegistry
from ...offload import cpu_bound
from ..oip import HEADER_LENGTH, InferRequest, check_labels, check_response_size, parse_request, render_response
from ..query import Query
from ..reply import Reply
from ..request import DataRequest
from .routing import Routes

routes = Routes(documented=False)
ROLES = ("encoder", "decoder")
WHOLE = "model"  # the bare model name: encoder then decoder (reconstruct)


def graph_of(registry: ModelRegistry, name: str, version: str | None) -> tuple[ServedModel, str]:
    """`<model>` (the whole autoencoder: image in, reconstruction out), `<model>.encoder` or `<model>.decoder`, its
    newest served version or `version`; UnknownModel (404) otherwise."""
    base, _, role = name.rpartition(".")
    if role not in ROLES:
        base, role = name, WHOLE
    model = registry.models.get(base)
    if model is None:
        names = sorted([*registry.models, *(f"{m}.{r}" for m in registry.models for r in ROLES)])
        raise UnknownModel(f"no model named {name!r}; the models here are {names}")
    return registry.get(base, version), role


def tensors_of(model: ServedModel, role: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The inputs and outputs a role takes and gives; the whole model: the encoder's inputs (and the decoder's
    label, where only the decoder takes one), and the decoder's image."""
    files = model.manifest.files
    if role == "encoder":
        return files.encoder.inputs, files.encoder.outputs
    if role == "decoder":
        return files.decoder.inputs, files.decoder.outputs
    taken = {t.name for t in files.encoder.inputs}
    extra = [t for t in files.decoder.inputs if t.name not in taken and t.name != "z"]
    image = files.decoder.output("image")
    assert image is not None  # the graph contract
    return [*files.encoder.inputs, *extra], [image]


class InferQuery(Query):
    """No query parameters: the request says everything in its body."""


@routes.post("/v2/models/{name}/infer", query=InferQuery)
@routes.post("/v2/models/{name}/versions/{version}/infer", query=InferQuery)
async def infer(request: DataRequest) -> Reply:
    """$inference_request -> $inference_response, JSON or with binary tensors (both ways)."""
    request.query(InferQuery)
    params = request.path_params
    model, role = graph_of(request.registry, params["name"], params.get("version"))
    limits = request.state.limits
    inputs, outputs = tensors_of(model, role)
    rows, setting = (
        (limits.max_latents, "VAE_MAX_LATENTS") if role == "decoder" else (limits.max_images, "VAE_MAX_IMAGES")
    )
    with request.state.in_flight.hold(model):  # an unload of this model waits for this request
        body = await request.body()
        header_length = request.header(HEADER_LENGTH.lower().encode())
        parsed = await cpu_bound(parse_request, body, header_length, inputs, outputs, rows, setting, nbytes=len(body))
        check_labels(parsed.feeds, len(model.class_names))
        first = next(iter(parsed.feeds.values()))
        check_response_size(parsed, outputs, len(first), limits.max_response_bytes)
        runner = {"encoder": model.encoder, "decoder": model.decoder}.get(role, model.chain)
        name, version = params["name"], model.manifest.version

        def finish(_: Feeds, arrays: Outputs) -> Reply:
            return _reply(name, version, parsed, arrays)

        return await runner.run(Job(len(first), parsed.outputs, parsed.feeds, finish))


def _reply(name: str, version: str, parsed: InferRequest, arrays: Outputs) -> Reply:
    content, headers, media_type = render_response(name, version, parsed, arrays)
    return Reply(200, media_type, content, headers)

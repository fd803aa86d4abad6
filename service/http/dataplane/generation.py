"""Routes that draw from the prior: GET /sample, GET /generate and POST /generate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Field

from ...errors import LabelRequired
from ...models.labels import Label
from ...models.model import PriorName, Sampled, ServedModel
from .. import openapi as doc
from ..examples import EXAMPLE_CONDITIONAL_MODEL
from ..query import (
    ClassLabelList,
    Count,
    ImagesOut,
    LabelList,
    Seed,
    Temperature,
    at_most,
    rng_for,
)
from ..query import (
    PriorName as PriorField,
)
from ..render import Format, Scale, choose_format, images_reply, png_work, rendered
from ..reply import Reply
from ..request import DataRequest
from ..uploads import LabelsJSON, merge_labels, parse_json
from .routing import Routes

routes = Routes(tags=["generation"])

ConditionalModel = Annotated[
    str | None,
    Field(
        min_length=1,
        description="a conditional model; the best-scoring conditional model when omitted",
        examples=[EXAMPLE_CONDITIONAL_MODEL],
    ),
]
_ERRORS = doc.errors(404, 409, 413, 422, 503)  # 413: an answer over VAE_MAX_RESPONSE_BYTES


class SampleQuery(ImagesOut):
    n: Count = 16
    seed: Seed = None
    temperature: Temperature = 1.0
    label: LabelList = None
    prior: PriorField = None


class GenerateQuery(ImagesOut):
    model: ConditionalModel = None
    label: ClassLabelList = None
    n: Count = 16
    seed: Seed = None
    temperature: Temperature = 1.0
    prior: PriorField = None


class GenerateManyQuery(ImagesOut):
    model: ConditionalModel = None
    prior: PriorField = None


async def _draw(
    request: DataRequest,
    model: ServedModel,
    n: int,
    labels: Sequence[Label] | None,
    seed: int | None,
    temperature: float,
    fmt: Format | None,
    prior: PriorName | None,
    scale_factor: int,
    columns: int | None = None,
) -> Reply:
    """n images from the prior (labels: none, one for all, or one per image), rendered in the chosen format."""
    limits = request.state.limits
    chosen_format = choose_format(fmt, request.accept, ("png", "json", "npy"), "png", request.path)
    at_most(n, limits.max_n, "n", "VAE_MAX_N")
    at_most(temperature, limits.max_temperature, "temperature", "VAE_MAX_TEMPERATURE")
    scale = Scale.of(scale_factor, limits)
    shape = (n, *model.image_shape)
    scale.check(chosen_format, shape, columns)
    rng, drawn = rng_for(seed)

    def render(sampled: Sampled) -> Reply:
        fields: dict[str, Any] = {
            "model": model.name,
            "seed": drawn,
            "temperature": temperature,
            "prior": sampled.prior,
            "labels": model.labels.names_of(sampled.labels),
        }
        headers = {**model.reply_headers, "X-Seed": str(drawn), "X-Prior": sampled.prior}
        return images_reply(chosen_format, sampled.images, fields=fields, headers=headers, columns=columns, scale=scale)

    return await rendered(
        lambda then: model.sample(n, rng, temperature, labels, prior, then=then),
        render,
        pixels=png_work(chosen_format, shape, scale),
    )


@routes.get(
    "/sample",
    query=SampleQuery,
    responses={
        **doc.images_ok(
            "n images decoded from z drawn from the fitted mixture or N(0, temperature^2 I)",
            seed=42,
            temperature=1.0,
            prior="fitted",
            labels=None,
        ),
        **_ERRORS,
    },
)
async def sample(request: DataRequest) -> Reply:
    """Sample n images from the model's prior; a conditional model needs `label` (one for all, or one per image)."""
    query = request.query(SampleQuery)
    model = request.model(query.model, query.version)
    labels = merge_labels(query.label, None, limit=request.state.limits.max_n, setting="VAE_MAX_N")
    return await _draw(
        request, model, query.n, labels, query.seed, query.temperature, query.fmt, query.prior, query.scale
    )


@routes.get(
    "/generate",
    query=GenerateQuery,
    responses={
        **doc.images_ok(
            "n images of each requested class",
            model=EXAMPLE_CONDITIONAL_MODEL,
            seed=42,
            temperature=1.0,
            prior="fitted",
            labels=["7"],
        ),
        **_ERRORS,
    },
)
async def generate(request: DataRequest) -> Reply:
    """Conditional generation: n images of class `label`; with several labels, one grid row per label."""
    query = request.query(GenerateQuery)
    served = request.conditional_model(query.model, query.version)
    limits = request.state.limits
    labels = merge_labels(query.label, None, limit=limits.max_n, setting="VAE_MAX_N")
    if not labels:
        raise LabelRequired(
            f"GET /generate needs label=<class>: an index 0..{len(served.class_names) - 1} or a class name "
            f"from {served.class_names} (model {served.name!r})"
        )
    at_most(len(labels) * query.n, limits.max_n, "n x labels", "VAE_MAX_N")  # before the per-image list is built
    per_image = [value for value in labels for _ in range(query.n)]
    columns = query.n if len(labels) > 1 else None
    return await _draw(
        request,
        served,
        len(per_image),
        per_image,
        query.seed,
        query.temperature,
        query.fmt,
        query.prior,
        query.scale,
        columns,
    )


@routes.post(
    "/generate",
    query=GenerateManyQuery,
    body=doc.labels_body(),
    responses={
        **doc.images_ok(
            "one image per label, in order",
            model=EXAMPLE_CONDITIONAL_MODEL,
            seed=42,
            temperature=0.8,
            prior="fitted",
            labels=["0", "1", "2", "3", "7"],
        ),
        **doc.errors(404, 409, 413, 415, 422, 503),
    },
)
async def generate_many(request: DataRequest) -> Reply:
    """Conditional generation from a JSON list of labels: n images per label (default one), in order."""
    query = request.query(GenerateManyQuery)
    served = request.conditional_model(query.model, query.version)
    max_n = request.state.limits.max_n
    body = await parse_json(request, LabelsJSON, max_n + 8, f"at most {max_n} labels (VAE_MAX_N)")
    assert isinstance(body, LabelsJSON)
    at_most(len(body.labels) * body.n, max_n, "n x labels", "VAE_MAX_N")  # before the per-image list is built
    per_image = [value for value in body.labels for _ in range(body.n)]
    columns = body.n if len(body.labels) > 1 else None  # one row per label, as GET /generate
    return await _draw(
        request,
        served,
        len(per_image),
        per_image,
        body.seed,
        body.temperature,
        query.fmt,
        query.prior,
        query.scale,
        columns,
    )

"""Routes that draw from the prior: GET /sample, GET /generate and POST /generate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from .. import openapi as doc
from ..deps import Model, Registry, Settings
from ..errors import LabelRequired
from ..inputs import LabelsJSON, merge_labels, parse_json
from ..model import Label, PriorName, ServedModel
from ..outputs import Format, Scale, choose_format, images_response
from .compiled import CompiledRoute
from .params import (
    ClassLabelQuery,
    FormatQuery,
    LabelQuery,
    NQuery,
    PriorQuery,
    ScaleQuery,
    SeedQuery,
    TemperatureQuery,
    at_most,
    rng_for,
)

router = APIRouter(tags=["generation"], route_class=CompiledRoute)

ConditionalModelQuery = Annotated[
    str | None,
    Query(
        alias="model",
        description="a conditional model; the best-scoring conditional model when omitted",
        examples=[doc.EXAMPLE_CONDITIONAL_MODEL],
    ),
]
_ERRORS = doc.errors(404, 409, 422, 503)


async def _draw(
    request: Request,
    model: ServedModel,
    settings: Settings,
    n: int,
    labels: Sequence[Label] | None,
    seed: int | None,
    temperature: float,
    fmt: Format | None,
    prior: PriorName | None,
    scale: Scale,
    columns: int | None = None,
) -> Response:
    """n images from the prior (labels: none, one for all, or one per image), rendered in the chosen format."""
    fmt = choose_format(request, fmt, ("png", "json", "npy"), "png")
    at_most(n, settings.max_n, "n", "VAE_MAX_N")
    at_most(temperature, settings.max_temperature, "temperature", "VAE_MAX_TEMPERATURE")
    rng, seed = rng_for(seed)
    images, resolved, used = await model.sample(n, rng, temperature, labels, prior)
    fields = {
        "model": model.name,
        "seed": seed,
        "temperature": temperature,
        "prior": used,
        "labels": model.label_names(resolved),
    }
    headers = {"X-Model": model.name, "X-Seed": str(seed), "X-Prior": used}
    return await images_response(fmt, images, fields=fields, headers=headers, columns=columns, scale=scale)


@router.get(
    "/sample",
    response_model=None,
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
async def sample(
    request: Request,
    model: Model,
    settings: Settings,
    scale: ScaleQuery,
    n: NQuery = 16,
    seed: SeedQuery = None,
    temperature: TemperatureQuery = 1.0,
    label: LabelQuery = None,
    prior: PriorQuery = None,
    fmt: FormatQuery = None,
) -> Response:
    """Sample n images from the model's prior; a conditional model needs `label` (one for all, or one per image)."""
    labels = merge_labels(label, None, limit=settings.max_n, setting="VAE_MAX_N")
    return await _draw(request, model, settings, n, labels, seed, temperature, fmt, prior, scale)


@router.get(
    "/generate",
    response_model=None,
    responses={
        **doc.images_ok(
            "n images of each requested class",
            model=doc.EXAMPLE_CONDITIONAL_MODEL,
            seed=42,
            temperature=1.0,
            prior="fitted",
            labels=["7"],
        ),
        **_ERRORS,
    },
)
async def generate(
    request: Request,
    registry: Registry,
    settings: Settings,
    scale: ScaleQuery,
    model: ConditionalModelQuery = None,
    label: ClassLabelQuery = None,
    n: NQuery = 16,
    seed: SeedQuery = None,
    temperature: TemperatureQuery = 1.0,
    prior: PriorQuery = None,
    fmt: FormatQuery = None,
) -> Response:
    """Conditional generation: n images of class `label`; with several labels, one grid row per label."""
    served = registry.get_conditional(model)
    at_most(n, settings.max_n, "n", "VAE_MAX_N")
    labels = merge_labels(label, None, limit=settings.max_n, setting="VAE_MAX_N")
    if not labels:
        raise LabelRequired(
            f"GET /generate needs label=<class>: an index 0..{len(served.class_names) - 1} or a class name "
            f"from {served.class_names} (model {served.name!r})"
        )
    at_most(len(labels) * n, settings.max_n, "n x labels", "VAE_MAX_N")  # before the per-image list is built
    per_image = [value for value in labels for _ in range(n)]
    columns = n if len(labels) > 1 else None
    return await _draw(
        request, served, settings, len(per_image), per_image, seed, temperature, fmt, prior, scale, columns
    )


@router.post(
    "/generate",
    response_model=None,
    openapi_extra=doc.labels_body(),
    responses={
        **doc.images_ok(
            "one image per label, in order",
            model=doc.EXAMPLE_CONDITIONAL_MODEL,
            seed=42,
            temperature=0.8,
            prior="fitted",
            labels=["0", "1", "2", "3", "7"],
        ),
        **doc.errors(404, 409, 413, 415, 422, 503),
    },
)
async def generate_many(
    request: Request,
    registry: Registry,
    settings: Settings,
    scale: ScaleQuery,
    model: ConditionalModelQuery = None,
    prior: PriorQuery = None,
    fmt: FormatQuery = None,
) -> Response:
    """Conditional generation from a JSON list of labels: one image per label, in order."""
    served = registry.get_conditional(model)
    body = await parse_json(request, LabelsJSON, settings.max_n + 8, f"at most {settings.max_n} labels (VAE_MAX_N)")
    assert isinstance(body, LabelsJSON)
    return await _draw(
        request, served, settings, len(body.labels), body.labels, body.seed, body.temperature, fmt, prior, scale
    )

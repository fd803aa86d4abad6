"""Latent-space routes: POST /interpolate, POST /attribute, POST /edit, GET and POST /traverse."""

from __future__ import annotations

import math
import re
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response

from .. import latent_ops
from .. import openapi as doc
from ..deps import Model, Settings
from ..errors import InvalidInput
from ..inputs import Uploads, decode_images, merge_labels, receive_images
from ..latent import InterpolationPath
from ..latent_inputs import decode_groups, receive_ends, receive_sets
from ..model import Label, ServedModel
from ..outputs import Format, Scale, choose_format, images_response, json_response, npy_response
from .compiled import CompiledRoute
from .params import FormatQuery, LabelQuery, ScaleQuery, at_most

router = APIRouter(tags=["latent space"], route_class=CompiledRoute)

DEFAULT_STRENGTHS = (0.0, 0.5, 1.0, 1.5, 2.0)
_INDEX = re.compile(r"[0-9]{1,9}")  # a dimension index: ASCII digits, few enough for int() to be instant

StepsQuery = Annotated[int, Query(ge=2, description="images along the path, both ends included", examples=[8])]
PathQuery = Annotated[
    InterpolationPath,
    Query(description="linear, or spherical (a great circle: keeps the norm a standard Gaussian sample has)"),
]
StrengthsQuery = Annotated[
    list[str] | None,
    Query(
        description="multiples of the vector added to each image's posterior mean; repeat or separate with "
        "commas (default 0,0.5,1,1.5,2); 0 is the reconstruction",
        examples=["0,1,2"],
    ),
]
DimsQuery = Annotated[
    list[str] | None,
    Query(
        description="latent dimensions, one row each; repeat or separate with commas. Default: the most "
        "informative ones (held-out KL per dimension; code variance for an ae), up to 8",
        examples=["0,3,5"],
    ),
]
RangeQuery = Annotated[
    float, Query(alias="range", gt=0, description="each row goes from base - range to base + range", examples=[3.0])
]
TraverseStepsQuery = Annotated[int, Query(ge=2, description="columns per row", examples=[7])]
_ERRORS = doc.errors(404, 409, 413, 415, 422, 503)


def _listed(values: list[str] | None, name: str, limit: int, setting: str) -> list[str]:
    """`name=1&name=2` or `name=1,2` as strings; counted before splitting, as labels are."""
    count = sum(value.count(",") + 1 for value in values or [])
    if count > limit:
        raise InvalidInput(f"query parameter '{name}' holds {count} values; the limit is {limit} ({setting})")
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _strengths(values: list[str] | None, settings: Settings) -> np.ndarray:
    listed = _listed(values, "strengths", settings.max_steps, "VAE_MAX_STEPS") or [str(s) for s in DEFAULT_STRENGTHS]
    try:
        numbers = [float(v) for v in listed]
    except ValueError:
        raise InvalidInput(f"query parameter 'strengths' must hold numbers, such as 0,0.5,1; got {values}") from None
    if not all(math.isfinite(s) for s in numbers):
        raise InvalidInput("query parameter 'strengths' holds NaN or infinite values; send finite numbers")
    return np.asarray(numbers, dtype=np.float32)


def _dims(values: list[str] | None, settings: Settings) -> list[int] | None:
    listed = _listed(values, "dims", settings.max_n, "VAE_MAX_N")
    if not all(_INDEX.fullmatch(v) for v in listed):
        raise InvalidInput(f"query parameter 'dims' must hold dimension indices, such as 0,3,5; got {values}")
    return [int(v) for v in listed] or None


def _one_row_per(n: int, images: np.ndarray, fmt: Format) -> np.ndarray:
    """npy: [n, columns, C, H, W]; png and json: [n * columns, C, H, W], the grid's rows."""
    return images.reshape(n, -1, *images.shape[1:]) if fmt == "npy" else images


@router.post(
    "/interpolate",
    response_model=None,
    openapi_extra=doc.interpolate_body(),
    responses={**doc.images_ok("`steps` images from one end to the other, in a row", path="linear"), **_ERRORS},
)
async def interpolate(
    request: Request,
    model: Model,
    settings: Settings,
    scale: ScaleQuery,
    steps: StepsQuery = 8,
    path: PathQuery = "linear",
    label: LabelQuery = None,
    fmt: FormatQuery = None,
) -> Response:
    """Images along a path between two images (their posterior means) or two latent vectors, ends included.

    A conditional model takes one label for both ends (its decoder takes a class index, which cannot be
    interpolated). png: one row, the ends at the edges; json adds the path's latents `z`; npy: [steps, C, H, W].
    """
    fmt = choose_format(request, fmt, ("png", "json", "npy"), "png")
    at_most(steps, settings.max_steps, "steps", "VAE_MAX_STEPS")
    at_most(steps, settings.max_n, "steps", "VAE_MAX_N")
    body = await receive_ends(request, model.manifest.latent_dim, settings)
    labels = merge_labels(label, body.labels, limit=settings.max_images, setting="VAE_MAX_IMAGES")
    images = (await decode_groups(body, model.manifest.image, settings)).get("images")
    result = await latent_ops.interpolate(model, images=images, z=body.z, labels=labels, steps=steps, path=path)
    fields = {"model": model.name, "path": path, "labels": model.label_names(result.labels), "z": result.z}
    headers = {"X-Model": model.name}
    return await images_response(fmt, result.images, fields=fields, headers=headers, columns=steps, scale=scale)


@router.post(
    "/attribute",
    response_model=None,
    openapi_extra=doc.sets_body(images=False),
    responses={**doc.ATTRIBUTE_OK, **_ERRORS},
)
async def attribute(
    request: Request, model: Model, settings: Settings, label: LabelQuery = None, fmt: FormatQuery = None
) -> Response:
    """An attribute vector: the mean posterior mean of the images `with` an attribute minus that of those `without`.

    Multipart files in the fields `with` and `without`, or JSON `{"with": [...], "without": [...]}` (base64).
    Labels, for a conditioned encoder: one for all, or one per image (`with` first).
    """
    fmt = choose_format(request, fmt, ("json", "npy"), "json")
    body = await receive_sets(request, settings, images=False, latent_dim=model.manifest.latent_dim)
    labels = merge_labels(label, body.labels, limit=settings.max_images, setting="VAE_MAX_IMAGES")
    sets = await decode_groups(body, model.manifest.image, settings)
    vector = await latent_ops.attribute(model, sets["with"], sets["without"], labels)
    headers = {"X-Model": model.name}
    if fmt == "npy":
        return npy_response(vector, headers)
    content = {
        "model": model.name,
        "vector": vector,
        "norm": float(np.linalg.norm(vector)),
        "n_with": len(sets["with"]),
        "n_without": len(sets["without"]),
    }
    return await json_response(content, headers, numbers=len(vector))


@router.post(
    "/edit",
    response_model=None,
    openapi_extra=doc.sets_body(images=True),
    responses={**doc.images_ok("one row per image, one column per strength", strengths=[0.0, 1.0]), **_ERRORS},
)
async def edit(
    request: Request,
    model: Model,
    settings: Settings,
    scale: ScaleQuery,
    strengths: StrengthsQuery = None,
    label: LabelQuery = None,
    fmt: FormatQuery = None,
) -> Response:
    """Move images along an attribute vector: each image's posterior mean plus each strength times the vector.

    The vector is JSON `vector` (from POST /attribute), or computed from the sets `with` and `without` sent
    alongside. png: one row per image (strength 0 is the reconstruction); npy: [N, strengths, C, H, W].
    """
    fmt = choose_format(request, fmt, ("png", "json", "npy"), "png")
    values = _strengths(strengths, settings)
    body = await receive_sets(request, settings, images=True, latent_dim=model.manifest.latent_dim)
    n = body.count("images")
    at_most(n * len(values), settings.max_n, "images x strengths", "VAE_MAX_N")  # before any image is decoded
    labels = merge_labels(label, body.labels, limit=settings.max_images, setting="VAE_MAX_IMAGES")
    groups = await decode_groups(body, model.manifest.image, settings)
    sets = (groups["with"], groups["without"]) if "with" in groups else None
    images, resolved = await latent_ops.edit(
        model, groups["images"], vector=body.vector, sets=sets, labels=labels, strengths=values
    )
    fields = {"model": model.name, "strengths": values, "labels": model.label_names(resolved)}
    headers = {"X-Model": model.name}
    images = _one_row_per(n, images, fmt)
    return await images_response(fmt, images, fields=fields, headers=headers, columns=len(values), scale=scale)


async def _traverse(
    request: Request,
    model: ServedModel,
    settings: Settings,
    uploads: Uploads | None,
    labels: list[Label] | None,
    dims: list[str] | None,
    steps: int,
    extent: float,
    fmt: Format | None,
    scale: Scale,
) -> Response:
    """A traversal grid around the prior mean (no upload) or an image's posterior mean, rendered."""
    fmt = choose_format(request, fmt, ("png", "json", "npy"), "png")
    at_most(steps, settings.max_steps, "steps", "VAE_MAX_STEPS")
    at_most(extent, settings.max_range, "range", "VAE_MAX_RANGE")
    chosen = _dims(dims, settings)
    at_most(latent_ops.traverse_dims(model, chosen) * steps, settings.max_n, "dims x steps", "VAE_MAX_N")
    if uploads is not None and len(uploads.files) != 1:
        raise InvalidInput(f"got {len(uploads.files)} images; a traversal has one base: send one image")
    image = None if uploads is None else (await decode_images(uploads, model.manifest.image, settings)).array
    result = await latent_ops.traverse(model, image=image, labels=labels, dims=chosen, steps=steps, extent=extent)
    rows: list[dict[str, int | float]] = [{"dim": int(d)} for d in result.dims]
    for row, score in zip(rows, result.scores or [], strict=False):  # no scores: rows name their dimension only
        row[str(result.score_name)] = score
    fields = {
        "model": model.name,
        "base": "prior mean" if image is None else "posterior mean",
        "ranked_by": result.ranked_by,
        "rows": rows,
        "values": result.values,
        "labels": model.label_names(result.labels[:1] if result.labels is not None else None),
    }
    images = _one_row_per(len(result.dims), result.images, fmt)
    headers = {"X-Model": model.name}
    return await images_response(fmt, images, fields=fields, headers=headers, columns=steps, scale=scale)


_TRAVERSE_OK = doc.images_ok(
    "one row per latent dimension, `steps` columns from -range to +range",
    base="prior mean",
    ranked_by="kl_per_dim",
    rows=[{"dim": 5, "kl_per_dim": 2.7}],
    values=[-3.0, 0.0, 3.0],
    labels=None,
)


@router.get("/traverse", response_model=None, responses={**_TRAVERSE_OK, **doc.errors(404, 409, 422, 503)})
async def traverse(
    request: Request,
    model: Model,
    settings: Settings,
    scale: ScaleQuery,
    dims: DimsQuery = None,
    steps: TraverseStepsQuery = 7,
    extent: RangeQuery = 3.0,
    label: LabelQuery = None,
    fmt: FormatQuery = None,
) -> Response:
    """Latent traversal around the prior mean: one row per dimension, that dimension moved from -range to +range.

    JSON labels the rows (`rows`: each dimension and the figure it was ranked by); npy: [dims, steps, C, H, W].
    An ae has no prior mean: POST an image as the base instead.
    """
    labels = merge_labels(label, None, limit=settings.max_n, setting="VAE_MAX_N")
    return await _traverse(request, model, settings, None, labels, dims, steps, extent, fmt, scale)


@router.post(
    "/traverse",
    response_model=None,
    openapi_extra=doc.image_body(),
    responses={**_TRAVERSE_OK, **_ERRORS},
)
async def traverse_image(
    request: Request,
    model: Model,
    settings: Settings,
    scale: ScaleQuery,
    dims: DimsQuery = None,
    steps: TraverseStepsQuery = 7,
    extent: RangeQuery = 3.0,
    label: LabelQuery = None,
    fmt: FormatQuery = None,
) -> Response:
    """Latent traversal around one image's posterior mean (the image as POST /encode takes it)."""
    uploads = await receive_images(request, settings)
    labels = merge_labels(label, uploads.labels, limit=settings.max_images, setting="VAE_MAX_IMAGES")
    return await _traverse(request, model, settings, uploads, labels, dims, steps, extent, fmt, scale)

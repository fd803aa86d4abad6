"""Latent-space routes: POST /interpolate, POST /attribute, POST /edit, GET and POST /traverse."""

from __future__ import annotations

import math
import re
from typing import Annotated

import numpy as np
from pydantic import Field

from ...errors import InvalidInput
from ...models.labels import Label
from ...models.model import ServedModel
from ...ops import latent as latent_ops
from ...ops.paths import InterpolationPath
from ...settings import LimitSettings
from .. import openapi as doc
from ..latent_bodies import decode_groups, receive_ends, receive_sets
from ..query import FormatName, ImagesOut, LabelList, ModelQuery, at_most, limit
from ..render import Format, Scale, choose_format, images_reply_offloaded, json_reply_offloaded, npy_reply
from ..reply import Reply
from ..request import DataRequest
from ..uploads import Uploads, decode_images, merge_labels, receive_images
from .routing import Routes

routes = Routes(tags=["latent space"])

DEFAULT_STRENGTHS = (0.0, 0.5, 1.0, 1.5, 2.0)
_INDEX = re.compile(r"[0-9]{1,9}")  # a dimension index: ASCII digits, few enough for int() to be instant

Steps = Annotated[
    int,
    Field(
        ge=2,
        description="images along the path, both ends included",
        examples=[8],
        json_schema_extra=limit("max_steps"),
    ),
]
PathName = Annotated[
    InterpolationPath,
    Field(description="linear, or spherical (a great circle: keeps the norm a standard Gaussian sample has)"),
]
Strengths = Annotated[
    list[str] | None,
    Field(
        description="multiples of the vector added to each image's posterior mean; repeat or separate with "
        "commas (default 0,0.5,1,1.5,2); 0 is the reconstruction",
        examples=["0,1,2"],
    ),
]
Dims = Annotated[
    list[str] | None,
    Field(
        description="latent dimensions, one row each; repeat or separate with commas. Default: the most "
        "informative ones (held-out KL per dimension; code variance for an ae), up to 8",
        examples=["0,3,5"],
    ),
]
Extent = Annotated[
    float,
    Field(
        alias="range",
        gt=0,
        description="each row goes from base - range to base + range",
        examples=[3.0],
        json_schema_extra=limit("max_range"),
    ),
]
TraverseSteps = Annotated[
    int, Field(ge=2, description="columns per row", examples=[7], json_schema_extra=limit("max_steps"))
]
_ERRORS = doc.errors(404, 409, 413, 415, 422, 503)


class InterpolateQuery(ImagesOut):
    steps: Steps = 8
    path: PathName = "linear"
    label: LabelList = None


class AttributeQuery(ModelQuery):
    label: LabelList = None
    fmt: FormatName = None


class EditQuery(ImagesOut):
    strengths: Strengths = None
    label: LabelList = None


class TraverseQuery(ImagesOut):
    dims: Dims = None
    steps: TraverseSteps = 7
    extent: Extent = 3.0
    label: LabelList = None


def _listed(values: list[str] | None, name: str, bound: int, setting: str) -> list[str]:
    """`name=1&name=2` or `name=1,2` as strings; counted before splitting, as labels are."""
    count = sum(value.count(",") + 1 for value in values or [])
    if count > bound:
        raise InvalidInput(f"parameter '{name}' holds {count} values; the limit is {bound} ({setting})")
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def _strengths(values: list[str] | None, settings: LimitSettings) -> np.ndarray:
    listed = _listed(values, "strengths", settings.max_steps, "VAE_MAX_STEPS") or [str(s) for s in DEFAULT_STRENGTHS]
    try:
        numbers = [float(v) for v in listed]
    except ValueError:
        raise InvalidInput(f"parameter 'strengths' must hold numbers, such as 0,0.5,1; got {values}") from None
    if not all(math.isfinite(s) for s in numbers):
        raise InvalidInput("parameter 'strengths' holds NaN or infinite values; send finite numbers")
    return np.asarray(numbers, dtype=np.float32)


def _dims(values: list[str] | None, settings: LimitSettings) -> list[int] | None:
    listed = _listed(values, "dims", settings.max_n, "VAE_MAX_N")
    if not all(_INDEX.fullmatch(v) for v in listed):
        raise InvalidInput(f"parameter 'dims' must hold dimension indices, such as 0,3,5; got {values}")
    return [int(v) for v in listed] or None


def _one_row_per(n: int, images: np.ndarray, fmt: Format) -> np.ndarray:
    """npy: [n, columns, C, H, W]; png and json: [n * columns, C, H, W], the grid's rows."""
    return images.reshape(n, -1, *images.shape[1:]) if fmt == "npy" else images


@routes.post(
    "/interpolate",
    query=InterpolateQuery,
    body=doc.interpolate_body(),
    responses={**doc.images_ok("`steps` images from one end to the other, in a row", path="linear"), **_ERRORS},
)
async def interpolate(request: DataRequest) -> Reply:
    """Images along a path between two images (their posterior means) or two latent vectors, ends included.

    A conditional model takes one label for both ends (its decoder takes a class index, which cannot be
    interpolated). png: one row, the ends at the edges; json adds the path's latents `z`; npy: [steps, C, H, W].
    """
    query = request.query(InterpolateQuery)
    model = request.model(query.model, query.version)
    limits = request.state.limits
    fmt = choose_format(query.fmt, request.accept, ("png", "json", "npy"), "png", request.path)
    at_most(query.steps, limits.max_n, "steps", "VAE_MAX_N")
    scale = Scale.of(query.scale, limits)
    path_numbers = query.steps * model.manifest.latent_dim  # JSON carries the path's z too
    scale.check(fmt, (query.steps, *model.image_shape), query.steps, numbers=path_numbers)
    body = await receive_ends(request, model.manifest.latent_dim, limits)
    labels = merge_labels(query.label, body.labels, limit=limits.max_images, setting="VAE_MAX_IMAGES")
    images = (await decode_groups(body, model.manifest.image, limits)).get("images")
    result = await latent_ops.interpolate(
        model, images=images, z=body.z, labels=labels, steps=query.steps, path=query.path
    )
    fields = {"model": model.name, "path": query.path, "labels": model.labels.names_of(result.labels), "z": result.z}
    headers = {**model.reply_headers}
    return await images_reply_offloaded(
        fmt, result.images, fields=fields, headers=headers, columns=query.steps, scale=scale
    )


@routes.post(
    "/attribute",
    query=AttributeQuery,
    body=doc.sets_body(images=False),
    responses={**doc.ATTRIBUTE_OK, **_ERRORS},
)
async def attribute(request: DataRequest) -> Reply:
    """An attribute vector: the mean posterior mean of the images `with` an attribute minus that of those `without`.

    Multipart files in the fields `with` and `without`, or JSON `{"with": [...], "without": [...]}` (base64).
    Labels, for a conditioned encoder: one for all, or one per image (`with` first).
    """
    query = request.query(AttributeQuery)
    model = request.model(query.model, query.version)
    limits = request.state.limits
    fmt = choose_format(query.fmt, request.accept, ("json", "npy"), "json", request.path)
    body = await receive_sets(request, limits, images=False, latent_dim=model.manifest.latent_dim)
    labels = merge_labels(query.label, body.labels, limit=limits.max_images, setting="VAE_MAX_IMAGES")
    sets = await decode_groups(body, model.manifest.image, limits)
    vector = await latent_ops.attribute(model, sets["with"], sets["without"], labels)
    headers = {**model.reply_headers}
    if fmt == "npy":
        return npy_reply(vector, headers)
    content = {
        "model": model.name,
        "vector": vector,
        "norm": float(np.linalg.norm(vector)),
        "n_with": len(sets["with"]),
        "n_without": len(sets["without"]),
    }
    return await json_reply_offloaded(content, headers, numbers=len(vector))


@routes.post(
    "/edit",
    query=EditQuery,
    body=doc.sets_body(images=True),
    responses={**doc.images_ok("one row per image, one column per strength", strengths=[0.0, 1.0]), **_ERRORS},
)
async def edit(request: DataRequest) -> Reply:
    """Move images along an attribute vector: each image's posterior mean plus each strength times the vector.

    The vector is JSON `vector` (from POST /attribute), or computed from the sets `with` and `without` sent
    alongside. png: one row per image (strength 0 is the reconstruction); npy: [N, strengths, C, H, W].
    """
    query = request.query(EditQuery)
    model = request.model(query.model, query.version)
    limits = request.state.limits
    fmt = choose_format(query.fmt, request.accept, ("png", "json", "npy"), "png", request.path)
    scale = Scale.of(query.scale, limits)
    values = _strengths(query.strengths, limits)
    body = await receive_sets(request, limits, images=True, latent_dim=model.manifest.latent_dim)
    n = body.count("images")
    at_most(n * len(values), limits.max_n, "images x strengths", "VAE_MAX_N")  # before any image is decoded
    scale.check(fmt, (n * len(values), *model.image_shape), len(values))
    labels = merge_labels(query.label, body.labels, limit=limits.max_images, setting="VAE_MAX_IMAGES")
    groups = await decode_groups(body, model.manifest.image, limits)
    sets = (groups["with"], groups["without"]) if "with" in groups else None
    images, resolved = await latent_ops.edit(
        model, groups["images"], vector=body.vector, sets=sets, labels=labels, strengths=values
    )
    fields = {"model": model.name, "strengths": values, "labels": model.labels.names_of(resolved)}
    headers = {**model.reply_headers}
    images = _one_row_per(n, images, fmt)
    return await images_reply_offloaded(fmt, images, fields=fields, headers=headers, columns=len(values), scale=scale)


async def _traverse(
    request: DataRequest,
    model: ServedModel,
    query: TraverseQuery,
    uploads: Uploads | None,
    labels: list[Label] | None,
) -> Reply:
    """A traversal grid around the prior mean (no upload) or an image's posterior mean, rendered."""
    limits = request.state.limits
    fmt = choose_format(query.fmt, request.accept, ("png", "json", "npy"), "png", request.path)
    scale = Scale.of(query.scale, limits)
    chosen = _dims(query.dims, limits)
    rows = latent_ops.traverse_dims(model, chosen)
    at_most(rows * query.steps, limits.max_n, "dims x steps", "VAE_MAX_N")
    scale.check(fmt, (rows * query.steps, *model.image_shape), query.steps)
    if uploads is not None and len(uploads.files) != 1:
        raise InvalidInput(f"got {len(uploads.files)} images; a traversal has one base: send one image")
    image = None if uploads is None else await decode_images(uploads, model.manifest.image, limits)
    result = await latent_ops.traverse(
        model, image=image, labels=labels, dims=chosen, steps=query.steps, extent=query.extent
    )
    table: list[dict[str, int | float]] = [{"dim": int(d)} for d in result.dims]
    for row, score in zip(table, result.scores or [], strict=False):  # no scores: rows name their dimension only
        row[str(result.score_name)] = score
    fields = {
        "model": model.name,
        "base": "prior mean" if image is None else "posterior mean",
        "ranked_by": result.ranked_by,
        "rows": table,
        "values": result.values,
        "labels": model.labels.names_of(result.labels[:1] if result.labels is not None else None),
    }
    images = _one_row_per(len(result.dims), result.images, fmt)
    headers = {**model.reply_headers}
    return await images_reply_offloaded(fmt, images, fields=fields, headers=headers, columns=query.steps, scale=scale)


_TRAVERSE_OK = doc.images_ok(
    "one row per latent dimension, `steps` columns from -range to +range",
    base="prior mean",
    ranked_by="kl_per_dim",
    rows=[{"dim": 5, "kl_per_dim": 2.7}],
    values=[-3.0, 0.0, 3.0],
    labels=None,
)


@routes.get("/traverse", query=TraverseQuery, responses={**_TRAVERSE_OK, **doc.errors(404, 409, 413, 422, 503)})
async def traverse(request: DataRequest) -> Reply:
    """Latent traversal around the prior mean: one row per dimension, that dimension moved from -range to +range.

    JSON labels the rows (`rows`: each dimension and the figure it was ranked by); npy: [dims, steps, C, H, W].
    An ae has no prior mean: POST an image as the base instead.
    """
    query = request.query(TraverseQuery)
    model = request.model(query.model, query.version)
    labels = merge_labels(query.label, None, limit=request.state.limits.max_n, setting="VAE_MAX_N")
    return await _traverse(request, model, query, None, labels)


@routes.post("/traverse", query=TraverseQuery, body=doc.image_body(), responses={**_TRAVERSE_OK, **_ERRORS})
async def traverse_image(request: DataRequest) -> Reply:
    """Latent traversal around one image's posterior mean (the image as POST /encode takes it)."""
    query = request.query(TraverseQuery)
    model = request.model(query.model, query.version)
    limits = request.state.limits
    uploads = await receive_images(request, limits)
    labels = merge_labels(query.label, uploads.labels, limit=limits.max_images, setting="VAE_MAX_IMAGES")
    return await _traverse(request, model, query, uploads, labels)

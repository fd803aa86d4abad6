"""Request bodies of the latent-space routes: two ends to interpolate, image sets, an edit's images and vector.

Built on service/http/uploads.py (the same readers, limits and messages as /encode): files are received and counted
first, and decoded only once the route has checked what they will cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from vaeformat.manifest import ImageSpec

from ..errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from ..settings import LimitSettings
from .npy import read_npy_latents
from .request import DataRequest
from .uploads import NPY_TYPE, RAW_IMAGE_TYPES, Label, Uploads, b64_files, decode_images, parse_json, receive_images

SETS = ("with", "without")  # /attribute's and /edit's two image sets, as multipart field names or JSON keys
_STRICT = ConfigDict(extra="forbid", strict=True, populate_by_name=True)  # true/false is not a number


class InterpolateJSON(BaseModel):
    """JSON body for /interpolate: two images or two latent vectors."""

    model_config = _STRICT
    images: list[str] | None = Field(None, min_length=1, description="two base64 PNG or JPEG files")
    z: list[list[float]] | None = Field(None, min_length=1, description="two latent vectors of latent_dim numbers")
    labels: list[Label] | None = Field(None, description="for a conditional model: one label, or the same for both")


class AttributeJSON(BaseModel):
    """JSON body for /attribute: images with the attribute and images without it."""

    model_config = _STRICT
    with_: list[str] = Field(alias="with", min_length=1, description="base64 images that show the attribute")
    without: list[str] = Field(min_length=1, description="base64 images that do not")
    labels: list[Label] | None = Field(None, description="for a conditioned encoder: one label, or one per image")


class EditJSON(BaseModel):
    """JSON body for /edit: images, and an attribute vector or the two sets to compute it from."""

    model_config = _STRICT
    images: list[str] = Field(min_length=1, description="base64 images to edit")
    vector: list[float] | None = Field(None, description="an attribute vector of latent_dim numbers (POST /attribute)")
    with_: list[str] | None = Field(None, alias="with", min_length=1, description="base64 images with the attribute")
    without: list[str] | None = Field(None, min_length=1, description="base64 images without it")
    labels: list[Label] | None = Field(None, description="one label, or one per image (images, with, without)")


@dataclass
class Received:
    """A latent route's body, counted but not decoded: files by group ('images', 'with', 'without')."""

    groups: dict[str, list[tuple[str, bytes]]]
    labels: list[int | str] | None = None
    z: np.ndarray | None = None  # [N, D], /interpolate's latent ends
    vector: np.ndarray | None = None  # [D], /edit's attribute vector

    def count(self, *names: str) -> int:
        return sum(len(self.groups.get(name, [])) for name in names)


def _limit_images(count: int, settings: LimitSettings) -> None:
    if count > settings.max_images:
        raise PayloadTooLarge(f"{count} images sent; the limit is {settings.max_images} (VAE_MAX_IMAGES)")


def _by_field(uploads: Uploads, sets: bool) -> dict[str, list[tuple[str, bytes]]]:
    """Multipart files grouped by field name: 'with' and 'without' are the sets (when the route takes sets)."""
    groups: dict[str, list[tuple[str, bytes]]] = {"images": [], "with": [], "without": []}
    fields = uploads.fields or ["images"] * len(uploads.files)
    for key, file in zip(fields, uploads.files, strict=True):
        groups[key if sets and key in SETS else "images"].append(file)
    return groups


async def receive_ends(request: DataRequest, latent_dim: int, settings: LimitSettings) -> Received:
    """/interpolate's body: two images (multipart, JSON `images`, not decoded) or two latents (JSON `z`, .npy)."""
    kind = request.media_type
    if kind == "application/json":
        limits = f"two images or two latent vectors of {latent_dim} numbers, and their labels"
        values = 3 * settings.max_images + 4 * (latent_dim + 1) + 16  # room for a few too many, refused by name
        body = await parse_json(request, InterpolateJSON, values, limits)
        assert isinstance(body, InterpolateJSON)
        if (body.images is None) == (body.z is None):
            which = "not both" if body.images is not None else "the body holds neither"
            raise InvalidInput(f"send body field 'images' (two base64 images) or 'z' (two latent vectors), {which}")
        labels = list(body.labels) if body.labels is not None else None
        if body.images is not None:
            _limit_images(len(body.images), settings)
            received = Received({"images": b64_files(body.images, "images")}, labels)
        else:
            assert body.z is not None
            if len(body.z) > settings.max_latents:
                raise PayloadTooLarge(f"{len(body.z)} latent vectors sent; interpolation takes two")
            received = Received({}, labels, z=_latents(body.z, latent_dim))
    elif kind == NPY_TYPE:
        received = Received({}, z=read_npy_latents(await request.body(), latent_dim, settings.max_latents))
    else:
        uploads = await receive_images(request, settings)
        received = Received(_by_field(uploads, sets=False), uploads.labels)
    ends = len(received.z) if received.z is not None else received.count("images")
    if ends != 2:
        what = "latent vectors" if received.z is not None else "images"
        raise InvalidInput(f"got {ends} {what}; interpolation goes between exactly two ends: send two")
    if received.z is not None and not np.isfinite(received.z).all():
        raise InvalidInput("the latent vectors hold NaN or infinite values; send finite numbers")
    return received


def _latents(z: list[list[float]], latent_dim: int) -> np.ndarray:
    lengths = {len(v) for v in z}
    if lengths != {latent_dim}:
        raise InvalidInput(
            f"body field 'z' holds vectors of length {sorted(lengths)}; this model's latent_dim is {latent_dim}"
        )
    return np.asarray(z, dtype=np.float32)


async def receive_sets(request: DataRequest, settings: LimitSettings, *, images: bool, latent_dim: int) -> Received:
    """/attribute's body (the sets 'with' and 'without'), or /edit's (`images`: images, and a vector or the sets)."""
    kind = request.media_type
    if kind == "application/json":
        schema: type[AttributeJSON | EditJSON] = EditJSON if images else AttributeJSON
        limits = f"at most {settings.max_images} images in all (VAE_MAX_IMAGES), a vector of {latent_dim} numbers"
        body = await parse_json(request, schema, 3 * settings.max_images + latent_dim + 16, limits)
        assert isinstance(body, AttributeJSON | EditJSON)
        groups = {name: b64_files(values, name) for name, values in _json_groups(body).items() if values is not None}
        labels = list(body.labels) if body.labels is not None else None
        vector = body.vector if isinstance(body, EditJSON) else None
        received = Received(groups, labels, vector=None if vector is None else np.asarray(vector, dtype=np.float32))
        _limit_images(received.count("images", *SETS), settings)
    elif kind == "multipart/form-data":
        uploads = await receive_images(request, settings)  # counts the files against VAE_MAX_IMAGES
        received = Received(_by_field(uploads, sets=True), uploads.labels)
        if not images and received.count("images"):
            raise InvalidInput("POST /attribute reads files in the form fields 'with' and 'without' only; rename them")
    elif kind in RAW_IMAGE_TYPES and images:
        raise UnsupportedMediaType(
            "a raw image body carries no attribute vector; send multipart/form-data (the images, plus files in the "
            "fields 'with' and 'without') or application/json with 'images' and 'vector'"
        )
    else:
        raise UnsupportedMediaType(
            f"Content-Type {kind or '(none)'!r} is not accepted here; send multipart/form-data (files in the fields "
            "'with' and 'without') or application/json"
        )
    if images and not received.count("images"):
        raise InvalidInput("the request holds no image to edit; attach images besides the 'with' and 'without' sets")
    if received.vector is not None and received.vector.shape != (latent_dim,):  # before any image is decoded
        raise InvalidInput(
            f"body field 'vector' holds {received.vector.size} numbers; this model's latent_dim is {latent_dim}: "
            "send a vector from POST /attribute on the same model"
        )
    if images and received.vector is not None and received.count(*SETS):
        raise InvalidInput("send body field 'vector' or the sets 'with' and 'without', not both")
    if images and received.vector is None and not (received.count("with") and received.count("without")):
        raise InvalidInput(
            "no attribute vector: send body field 'vector' (from POST /attribute), or images in both sets "
            "'with' and 'without'"
        )
    if not images and not (received.count("with") and received.count("without")):
        raise InvalidInput(
            f"an attribute vector needs images in both sets: got {received.count('with')} 'with' and "
            f"{received.count('without')} 'without'"
        )
    return received


def _json_groups(body: AttributeJSON | EditJSON) -> dict[str, list[str] | None]:
    groups: dict[str, list[str] | None] = {"with": body.with_, "without": body.without}
    if isinstance(body, EditJSON):
        groups["images"] = body.images
    return groups


async def decode_groups(received: Received, spec: ImageSpec, settings: LimitSettings) -> dict[str, np.ndarray]:
    """Decode every group's files in one batch: {'images': [N, C, H, W], 'with': ..., 'without': ...}."""
    names = [name for name, files in received.groups.items() if files]
    files = [file for name in names for file in received.groups[name]]
    if not files:
        return {}
    array = await decode_images(Uploads(files, None), spec, settings)
    bounds = np.cumsum([0] + [len(received.groups[name]) for name in names])
    return {name: array[bounds[i] : bounds[i + 1]] for i, name in enumerate(names)}

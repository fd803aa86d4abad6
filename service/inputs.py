"""Read request bodies into arrays: images (multipart, JSON base64, raw PNG/JPEG) and latents (JSON, .npy).

Every failure is a ServiceError naming the part of the request that was wrong (`images[2]`, `file 'a.png'`).
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass

import numpy as np
from fastapi import Request
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from .images import open_image, to_array
from .manifest import ImageSpec
from .offload import cpu_bound
from .settings import Settings

Label = StrictInt | StrictStr
RAW_IMAGE_TYPES = ("image/png", "image/jpeg", "application/octet-stream")
NPY_TYPE = "application/x-npy"


class ImagesJSON(BaseModel):
    """JSON body for /encode and /reconstruct."""

    model_config = ConfigDict(extra="forbid")
    images: list[str] = Field(min_length=1, description="base64 PNG or JPEG files (a data: URL prefix is allowed)")
    labels: list[Label] | None = Field(None, description="one label for all images, or one per image")


class LatentsJSON(BaseModel):
    """JSON body for /decode."""

    model_config = ConfigDict(extra="forbid")
    z: list[list[float]] = Field(min_length=1, description="latent vectors, each of the model's latent_dim")
    labels: list[Label] | None = Field(None, description="for a conditional model: one label, or one per vector")


class LabelsJSON(BaseModel):
    """JSON body for POST /generate: one image per label."""

    model_config = ConfigDict(extra="forbid")
    labels: list[Label] = Field(min_length=1, description="class indices or names; one image is made per entry")
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    temperature: float = Field(1.0, ge=0.0)


@dataclass
class Images:
    array: np.ndarray  # [N, C, H, W] float32 in [0, 1]
    labels: list[int | str] | None  # labels that came inside the body, if any


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _validation_message(e: ValidationError) -> str:
    return "; ".join(
        f"body field '{'.'.join(str(p) for p in err['loc']) or '(top level)'}': {err['msg']}" for err in e.errors()
    )


async def parse_json(request: Request, schema: type[BaseModel]) -> BaseModel:
    """Validate a JSON body against `schema`; InvalidInput names the field."""
    if media_type(request) != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type {media_type(request) or '(none)'!r} is not accepted here; send application/json"
        )
    body = await request.body()
    try:
        return schema.model_validate_json(body)
    except ValidationError as e:
        raise InvalidInput(_validation_message(e) if body.strip() else "the JSON body is empty") from None


def _split_labels(values: list[str]) -> list[int | str]:
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _b64(value: str, where: str) -> bytes:
    if value.startswith("data:"):
        value = value.split(",", 1)[-1]
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where} is not valid base64; encode the PNG or JPEG file's bytes with base64") from None


async def read_images(request: Request, spec: ImageSpec, settings: Settings) -> Images:
    """The request's images as one [N, C, H, W] batch, whatever way they were sent."""
    kind = media_type(request)
    labels: list[int | str] | None = None
    if kind == "multipart/form-data":
        named, labels = await _multipart(request, settings)
    elif kind == "application/json":
        body = await parse_json(request, ImagesJSON)
        assert isinstance(body, ImagesJSON)
        if len(body.images) > settings.max_images:
            raise PayloadTooLarge(
                f"{len(body.images)} images sent; the limit is {settings.max_images} (VAE_MAX_IMAGES)"
            )
        named = [(f"body field 'images[{i}]'", _b64(s, f"body field 'images[{i}]'")) for i, s in enumerate(body.images)]
        labels = list(body.labels) if body.labels is not None else None
    elif kind in RAW_IMAGE_TYPES:
        named = [("the request body", await request.body())]
    else:
        raise UnsupportedMediaType(
            f"Content-Type {kind or '(none)'!r} is not accepted here; send multipart/form-data (one or more files), "
            'application/json ({"images": [base64, ...]}), or a raw image/png or image/jpeg body'
        )
    if not named:
        raise InvalidInput("the request holds no image; attach a PNG or JPEG file (curl -F file=@digit.png ...)")
    # Headers first (cheap, and they refuse oversized images before any pixel is expanded); then decoding and
    # resizing, which is CPU work up to max_images x max_pixels, inline only when small (service/offload.py).
    opened = [(what, open_image(data, settings.max_pixels, what)) for what, data in named]
    pixels = sum(image.width * image.height for _, image in opened)
    array = await cpu_bound(_decode_all, opened, spec, pixels=pixels)
    return Images(array, labels or None)


def _decode_all(opened: list[tuple[str, Image.Image]], spec: ImageSpec) -> np.ndarray:
    return np.stack([to_array(image, spec, what) for what, image in opened]).astype(np.float32, copy=False)


async def _multipart(request: Request, settings: Settings) -> tuple[list[tuple[str, bytes]], list[int | str]]:
    try:
        form = await request.form(max_files=settings.max_images, max_fields=64)
    except StarletteHTTPException as e:  # starlette reports its multipart limits as a 400
        if "Too many files" in str(e.detail):
            raise PayloadTooLarge(
                f"too many files; the limit is {settings.max_images} images (VAE_MAX_IMAGES)"
            ) from None
        raise InvalidInput(f"the multipart body could not be parsed: {e.detail}") from None
    try:
        named: list[tuple[str, bytes]] = []
        texts: list[str] = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                named.append((f"file {value.filename or key!r}", await value.read()))
            elif key in ("label", "labels"):
                texts.append(value)
            else:
                raise InvalidInput(f"form field {key!r} is not understood; send files, and 'label' fields for labels")
        return named, _split_labels(texts)
    finally:
        await form.close()


async def read_latents(
    request: Request, latent_dim: int, settings: Settings
) -> tuple[np.ndarray, list[int | str] | None]:
    """Latent vectors [N, D] from a JSON body or a raw .npy body; labels from the JSON body, if any."""
    kind = media_type(request)
    labels: list[int | str] | None = None
    if kind == "application/json":
        body = await parse_json(request, LatentsJSON)
        assert isinstance(body, LatentsJSON)
        lengths = {len(v) for v in body.z}
        if lengths != {latent_dim}:
            raise InvalidInput(
                f"body field 'z' holds vectors of length {sorted(lengths)}; this model's latent_dim is {latent_dim}"
            )
        z = np.asarray(body.z, dtype=np.float32)
        labels = list(body.labels) if body.labels is not None else None
    elif kind == NPY_TYPE:
        z = _npy(await request.body(), latent_dim)
    else:
        raise UnsupportedMediaType(
            f"Content-Type {kind or '(none)'!r} is not accepted here; send application/json "
            '({"z": [[...], ...]}) or application/x-npy (a float array [N, latent_dim] saved with numpy.save)'
        )
    if len(z) > settings.max_latents:  # one check for both body kinds
        raise PayloadTooLarge(f"{len(z)} latent vectors sent; the limit is {settings.max_latents} (VAE_MAX_LATENTS)")
    if not np.isfinite(z).all():
        raise InvalidInput("the latent vectors hold NaN or infinite values; send finite numbers")
    return z, labels


def _npy(data: bytes, latent_dim: int) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)  # never unpickle client data
    except (ValueError, OSError, EOFError) as e:
        raise InvalidInput(f"the body is not a readable .npy array ({e}); write it with numpy.save") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "fiu":
        raise InvalidInput("the .npy body must hold a numeric array [N, latent_dim]")
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != latent_dim or array.shape[0] == 0:
        raise InvalidInput(f"the .npy array has shape {list(array.shape)}; this model needs [N, {latent_dim}]")
    return array.astype(np.float32)


def merge_labels(query: list[str] | None, body: list[int | str] | None) -> list[int | str] | None:
    """Labels from the query (`label=7&label=3`, or `label=7,3`) or from the body, not both."""
    from_query = _split_labels(query) if query else None
    if from_query and body:
        raise InvalidInput("labels were given both in the query and in the body; give them in one place")
    return from_query or body

"""Read request bodies into arrays: images (multipart, JSON base64, raw PNG/JPEG) and latents (JSON, .npy).

Every failure is a ServiceError naming the part of the request that was wrong (`images[2]`, `file 'a.png'`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

import numpy as np
from fastapi import Request
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from vaeformat.manifest import ImageSpec

from .errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from .images import decode_model_sized_png, open_image, to_array
from .npy import read_npy_latents
from .offload import cpu_bound, is_small
from .settings import Settings

Label = StrictInt | StrictStr
RAW_IMAGE_TYPES = ("image/png", "image/jpeg", "application/octet-stream")
NPY_TYPE = "application/x-npy"


class ImagesJSON(BaseModel):
    """JSON body for /encode and /reconstruct."""

    model_config = ConfigDict(extra="forbid", strict=True)  # true/false is not a number
    images: list[str] = Field(min_length=1, description="base64 PNG or JPEG files (a data: URL prefix is allowed)")
    labels: list[Label] | None = Field(None, description="one label for all images, or one per image")


class LatentsJSON(BaseModel):
    """JSON body for /decode."""

    model_config = ConfigDict(extra="forbid", strict=True)  # true/false is not a number
    z: list[list[float]] = Field(min_length=1, description="latent vectors, each of the model's latent_dim")
    labels: list[Label] | None = Field(None, description="for a conditional model: one label, or one per vector")


class LabelsJSON(BaseModel):
    """JSON body for POST /generate: one image per label."""

    model_config = ConfigDict(extra="forbid", strict=True)  # true/false is not a number
    labels: list[Label] = Field(min_length=1, description="class indices or names; one image is made per entry")
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    temperature: float = Field(1.0, ge=0.0)


@dataclass
class Uploads:
    files: list[tuple[str, bytes]]  # (the part as error messages name it, its bytes), not decoded yet
    labels: list[int | str] | None  # labels that came inside the body, if any
    fields: list[str] = field(default_factory=list)  # each file's multipart field name (/attribute's 'with')


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


async def parse_json(request: Request, schema: type[BaseModel], max_values: int, limits: str) -> BaseModel:
    """Validate a JSON body against `schema`; InvalidInput names the field.

    `max_values` bounds the values that a body within the limits (`limits` says which) can hold; a body with more
    is refused before it is parsed.
    """
    if media_type(request) != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type {media_type(request) or '(none)'!r} is not accepted here; send application/json"
        )
    body = await request.body()
    # pydantic builds every value of a document before any length check runs (10 MB of [0,0,0,0] took 1.6 s of
    # the event loop and 490 MB); counting commas, which bound the values, takes milliseconds. A label holding a
    # comma counts twice, which costs nothing: labels split at commas in the query and the form anyway.
    values = body.count(b",") + 1
    if values > max_values:
        raise PayloadTooLarge(
            f"the JSON body holds up to {values} values (commas + 1), more than a request within the limits can: "
            f"{limits}; send fewer"
        )
    try:
        return schema.model_validate_json(body)
    except ValidationError as e:
        raise InvalidInput(_validation_message(e) if body.strip() else "the JSON body is empty") from None


def _split_labels(values: list[str], limit: int, setting: str, where: str) -> list[int | str]:
    # Counted before splitting: one 10 MB form field of "0,0,..." would be five million strings.
    count = sum(value.count(",") + 1 for value in values)
    if count > limit:
        raise InvalidInput(
            f"{where} holds {count} labels; the limit is {limit} ({setting}): give one label for all rows, "
            "or one per row"
        )
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
    return await decode_images(await receive_images(request, settings), spec, settings)


async def receive_images(request: Request, settings: Settings) -> Uploads:
    """The request's image files, counted against VAE_MAX_IMAGES but not decoded (`decode_images` does that)."""
    kind = media_type(request)
    labels: list[int | str] | None = None
    fields: list[str] = []
    if kind == "multipart/form-data":
        named, labels, fields = await _multipart(request, settings)
    elif kind == "application/json":
        limits = f"at most {settings.max_images} images (VAE_MAX_IMAGES), and one label per image"
        body = await parse_json(request, ImagesJSON, 3 * settings.max_images + 8, limits)  # data: URLs hold a comma
        assert isinstance(body, ImagesJSON)
        if len(body.images) > settings.max_images:
            raise PayloadTooLarge(
                f"{len(body.images)} images sent; the limit is {settings.max_images} (VAE_MAX_IMAGES)"
            )
        named = b64_files(body.images, "images")
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
    return Uploads(named, labels or None, fields)


def b64_files(values: list[str], key: str) -> list[tuple[str, bytes]]:
    """A JSON body's list of base64 files, each named as error messages show it (`body field 'images[2]'`)."""
    return [(f"body field '{key}[{i}]'", _b64(s, f"body field '{key}[{i}]'")) for i, s in enumerate(values)]


async def decode_images(uploads: Uploads, spec: ImageSpec, settings: Settings) -> Images:
    """Decode uploaded files to one [N, C, H, W] batch in the model's channels and size."""
    nbytes = sum(len(data) for _, data in uploads.files)
    if not is_small(nbytes=nbytes):  # even reading the headers of many bytes may take long: all of it on a thread
        array = await cpu_bound(_open_and_decode, uploads.files, spec, settings.max_pixels, nbytes=nbytes)
        return Images(array, uploads.labels)
    # The usual upload, PNGs of the model's own size, decodes directly (service/images.py), here on the loop when
    # that many pixels are cheap (few bytes can still be many pixels of a large model); else below, on a thread.
    if uploads.files and is_small(pixels=len(uploads.files) * spec.channels * spec.height * spec.width):
        arrays: list[np.ndarray] = []
        for _, data in uploads.files:
            direct = decode_model_sized_png(data, spec)
            if direct is None:  # one file of another kind: all of them take the path below
                break
            arrays.append(direct)
        else:
            return Images(np.stack(arrays), uploads.labels)
    # Otherwise headers first (cheap for so few bytes, and they refuse oversized images before any pixel is
    # expanded); then decoding and resizing, CPU work up to max_images x max_pixels, inline only when small.
    opened = [(what, open_image(data, settings.max_pixels, what)) for what, data in uploads.files]
    pixels = sum(image.width * image.height for _, image in opened)
    return Images(await cpu_bound(_decode_all, opened, spec, pixels=pixels, nbytes=nbytes), uploads.labels)


def _open_and_decode(files: list[tuple[str, bytes]], spec: ImageSpec, max_pixels: int) -> np.ndarray:
    return _decode_all([(what, open_image(data, max_pixels, what)) for what, data in files], spec)


def _decode_all(opened: list[tuple[str, Image.Image]], spec: ImageSpec) -> np.ndarray:
    return np.stack([to_array(image, spec, what) for what, image in opened]).astype(np.float32, copy=False)


async def _multipart(
    request: Request, settings: Settings
) -> tuple[list[tuple[str, bytes]], list[int | str], list[str]]:
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
        keys: list[str] = []
        texts: list[str] = []
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                named.append((f"file {value.filename or key!r}", await value.read()))
                keys.append(key)
            elif key in ("label", "labels"):
                texts.append(value)
            else:
                raise InvalidInput(f"form field {key!r} is not understood; send files, and 'label' fields for labels")
        labels = _split_labels(texts, settings.max_images, "VAE_MAX_IMAGES", "the form's 'label' fields")
        return named, labels, keys
    finally:
        await form.close()


async def read_latents(
    request: Request, latent_dim: int, settings: Settings
) -> tuple[np.ndarray, list[int | str] | None]:
    """Latent vectors [N, D] from a JSON body or a raw .npy body; labels from the JSON body, if any."""
    kind = media_type(request)
    labels: list[int | str] | None = None
    if kind == "application/json":
        limits = f"at most {settings.max_latents} vectors (VAE_MAX_LATENTS) of {latent_dim} numbers, and their labels"
        body = await parse_json(request, LatentsJSON, settings.max_latents * (latent_dim + 1) + 8, limits)
        assert isinstance(body, LatentsJSON)
        if len(body.z) > settings.max_latents:
            raise PayloadTooLarge(
                f"{len(body.z)} latent vectors sent; the limit is {settings.max_latents} (VAE_MAX_LATENTS)"
            )
        lengths = {len(v) for v in body.z}
        if lengths != {latent_dim}:
            raise InvalidInput(
                f"body field 'z' holds vectors of length {sorted(lengths)}; this model's latent_dim is {latent_dim}"
            )
        z = np.asarray(body.z, dtype=np.float32)
        labels = list(body.labels) if body.labels is not None else None
    elif kind == NPY_TYPE:
        z = read_npy_latents(await request.body(), latent_dim, settings.max_latents)
    else:
        raise UnsupportedMediaType(
            f"Content-Type {kind or '(none)'!r} is not accepted here; send application/json "
            '({"z": [[...], ...]}) or application/x-npy (a float array [N, latent_dim] saved with numpy.save)'
        )
    if not np.isfinite(z).all():
        raise InvalidInput("the latent vectors hold NaN or infinite values; send finite numbers")
    return z, labels


def merge_labels(
    query: list[str] | None, body: list[int | str] | None, *, limit: int, setting: str
) -> list[int | str] | None:
    """Labels from the query (`label=7&label=3`, or `label=7,3`) or from the body, not both; at most `limit`."""
    from_query = _split_labels(query, limit, setting, "query parameter 'label'") if query else None
    if from_query and body:
        raise InvalidInput("labels were given both in the query and in the body; give them in one place")
    return from_query or body

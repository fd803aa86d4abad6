"""Read request bodies: images (multipart, JSON base64, raw PNG/JPEG) and latents (JSON, .npy).

Images are received and counted first (`receive_images`), and decoded only once the route has checked what they
will cost (`images_for`): the usual upload, model-sized PNGs of a few KB, is decoded later on the batch's worker
thread, in one pass with the rest of its batch; anything else is decoded here, off the event loop when it is large.
Every failure is a ServiceError naming the part of the request that was wrong (`images[2]`, `file 'a.png'`).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException

from vaeformat.manifest import ImageSpec

from ..errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from ..models.model import Images
from ..offload import cpu_bound, is_small
from ..settings import LimitSettings
from .images import decode_image, decode_model_sized_pngs, is_model_sized_png, open_image, to_array
from .npy import read_npy_latents
from .request import DataRequest

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
    labels: list[Label] = Field(min_length=1, description="class indices or names; n images are made per entry")
    n: int = Field(1, ge=1, description="images per label (one grid row per label when more than one)")
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    temperature: float = Field(1.0, ge=0.0)


@dataclass
class Uploads:
    files: list[tuple[str, bytes]]  # (the part as error messages name it, its bytes), not decoded yet
    labels: list[int | str] | None  # labels that came inside the body, if any
    fields: list[str] = field(default_factory=list)  # each file's multipart field name (/attribute's 'with')


def _validation_message(e: ValidationError) -> str:
    """One line per distinct problem: the same error at every entry of a list is said once, for the list."""
    said: dict[tuple[str, str, str], list[int]] = {}
    for err in e.errors():
        loc = list(err["loc"])
        last = loc[-1] if loc else None
        entry = -1  # not an entry of a list
        if isinstance(last, int):
            entry = last
            loc.pop()
        key = (".".join(str(p) for p in loc) or "(top level)", err["msg"], err["type"])
        said.setdefault(key, []).append(entry)
    lines = []
    for (where, msg, kind), entries in said.items():
        if len(entries) > 1 and min(entries) >= 0:
            lines.append(f"body field '{where}': every entry ({len(entries)} of them): {msg}")
            if kind == "list_type":
                lines[-1] += f"; '{where}' is a list of lists: send [[...], [...]], one inner list per row"
        else:
            lines += [f"body field '{where}{'' if i < 0 else f'.{i}'}': {msg}" for i in entries]
    return "; ".join(lines)


async def parse_json(request: DataRequest, schema: type[BaseModel], max_values: int, limits: str) -> BaseModel:
    """Validate a JSON body against `schema`; InvalidInput names the field.

    `max_values` bounds the values that a body within the limits (`limits` says which) can hold; a body with more
    is refused before it is parsed.
    """
    if request.media_type != "application/json":
        raise UnsupportedMediaType(
            f"Content-Type {request.media_type or '(none)'!r} is not accepted here; send application/json"
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
        return await cpu_bound(schema.model_validate_json, body, nbytes=len(body))
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


_BASE64_WHITESPACE = b" \t\n\r\v\f"  # line breaks and spaces that base64 text may carry


def _b64(value: str, where: str) -> bytes:
    if value.startswith("data:"):
        value = value.split(",", 1)[-1]
    try:
        # Whitespace goes in one pass over the bytes: splitting the text first would make one string per piece
        # (millions for a body of short pieces, hundreds of MB).
        return base64.b64decode(value.encode("ascii").translate(None, _BASE64_WHITESPACE), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{where} is not valid base64; encode the PNG or JPEG file's bytes with base64") from None


async def receive_images(request: DataRequest, settings: LimitSettings) -> Uploads:
    """The request's image files, counted against VAE_MAX_IMAGES but not decoded (`decode_images` does that)."""
    kind = request.media_type
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
        size = sum(len(image) for image in body.images)
        named = await cpu_bound(b64_files, body.images, "images", nbytes=size)  # megabytes: off the event loop
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


class Deferred:
    """Model-sized PNGs, decoded when the batch that carries them runs (`array()`, on its worker thread)."""

    def __init__(self, files: list[tuple[str, bytes]], spec: ImageSpec, max_pixels: int) -> None:
        self.files = files
        self.spec = spec
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def array(self) -> np.ndarray:
        """float32 [N, C, H, W]: the files decoded together (service/http/images.py), or through Pillow's full
        path where that cannot be (a tRNS chunk, say), which for an image of the model's own size is as cheap."""
        return Deferred.many([self])[0]

    @staticmethod
    def many(batch: list[Deferred]) -> list[np.ndarray]:
        """Every file of a batch's uploads decoded in one pass; each upload's images, in order."""
        spec, files = batch[0].spec, [file for deferred in batch for file in deferred.files]
        direct = decode_model_sized_pngs([data for _, data in files], spec)
        images = [
            image if image is not None else decode_image(data, spec, batch[0].max_pixels, what)
            for image, (what, data) in zip(direct, files, strict=True)
        ]
        ends = np.cumsum([0] + [len(deferred) for deferred in batch]).tolist()
        return [np.stack(images[start:stop]) for start, stop in zip(ends, ends[1:], strict=False)]


async def images_for(uploads: Uploads, spec: ImageSpec, settings: LimitSettings) -> Images:
    """The uploads as the model's input: deferred to the batch worker when they are small model-sized PNGs (a
    look at each file's header decides), else decoded now (`decode_images`)."""
    if is_small(nbytes=sum(len(data) for _, data in uploads.files)) and all(
        is_model_sized_png(data, spec) for _, data in uploads.files
    ):
        return Deferred(uploads.files, spec, settings.max_pixels)
    return await decode_images(uploads, spec, settings)


async def decode_images(uploads: Uploads, spec: ImageSpec, settings: LimitSettings) -> np.ndarray:
    """Decode uploaded files to one [N, C, H, W] batch in the model's channels and size."""
    nbytes = sum(len(data) for _, data in uploads.files)
    if not is_small(nbytes=nbytes):  # even reading the headers of many bytes may take long: all of it on a thread
        return await cpu_bound(_open_and_decode, uploads.files, spec, settings.max_pixels, nbytes=nbytes)
    # Headers first (cheap for so few bytes, and they refuse oversized images before any pixel is expanded); then
    # decoding and resizing, CPU work up to max_images x max_pixels, inline only when small.
    opened = [(what, data, open_image(data, settings.max_pixels, what)) for what, data in uploads.files]
    pixels = sum(image.width * image.height for _, _, image in opened)
    return await cpu_bound(_decode_all, opened, spec, pixels=pixels, nbytes=nbytes)


def _open_and_decode(files: list[tuple[str, bytes]], spec: ImageSpec, max_pixels: int) -> np.ndarray:
    return _decode_all([(what, data, open_image(data, max_pixels, what)) for what, data in files], spec)


def _decode_all(opened: list[tuple[str, bytes, Image.Image]], spec: ImageSpec) -> np.ndarray:
    arrays = []
    for what, data, image in opened:
        try:
            arrays.append(to_array(image, data, spec, what))
        finally:  # a large upload's full-size pixels are freed before the next one is loaded
            image.close()
    return np.stack(arrays).astype(np.float32, copy=False)


async def _multipart(
    request: DataRequest, settings: LimitSettings
) -> tuple[list[tuple[str, bytes]], list[int | str], list[str]]:
    try:
        form = await request.form(max_files=settings.max_images, max_fields=64)
    except MultiPartException as e:  # starlette's multipart limits and parse errors
        if "Too many files" in e.message:
            raise PayloadTooLarge(
                f"too many files; the limit is {settings.max_images} images (VAE_MAX_IMAGES)"
            ) from None
        raise InvalidInput(f"the multipart body could not be parsed: {e.message}") from None
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
    request: DataRequest, latent_dim: int, settings: LimitSettings
) -> tuple[np.ndarray, list[int | str] | None]:
    """Latent vectors [N, D] from a JSON body or a raw .npy body; labels from the JSON body, if any."""
    kind = request.media_type
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
    from_query = _split_labels(query, limit, setting, "parameter 'label'") if query else None
    if from_query and body:
        raise InvalidInput("labels were given both in the query and in the body; give them in one place")
    return from_query or body

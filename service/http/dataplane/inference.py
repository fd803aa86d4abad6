"""Routes that take data in: POST /encode, POST /decode, POST /reconstruct.

Each reads top to bottom: its query (limits included), its body (counted, not decoded), one model call whose inputs
are decoded and whose reply is rendered on the batch's worker thread.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated

import numpy as np
from pydantic import Field

from ...models.model import Decoding, Encoding, Reconstruction, ServedModel
from .. import openapi as doc
from ..query import FormatName, ImagesOut, LabelList, ModelQuery, Seed, at_most, limit, rng_for
from ..render import (
    JSON_FIELDS_BYTES,
    JSON_NUMBER_BYTES,
    Format,
    Scale,
    check_answer_size,
    choose_format,
    images_reply,
    json_reply,
    npy_bytes,
    npy_reply,
    png_work,
    rendered,
)
from ..reply import Reply
from ..request import DataRequest
from ..uploads import images_for, merge_labels, read_latents, receive_images
from .routing import Routes

routes = Routes(tags=["inference"])


class EncodeQuery(ModelQuery):
    samples: Annotated[
        int,
        Field(
            ge=0,
            description="z draws per image from q(z|x) (0: none; 409 for an ae)",
            examples=[4],
            json_schema_extra=limit("max_samples"),
        ),
    ] = 0
    seed: Seed = None
    label: LabelList = None
    fmt: FormatName = None


class DecodeQuery(ImagesOut):
    label: LabelList = None


ReconstructQuery = DecodeQuery


def _encoding(fmt: Format, model: ServedModel, seed: int | None, encoding: Encoding) -> Reply:
    headers = {**model.reply_headers, **({"X-Seed": str(seed)} if seed is not None else {})}
    if fmt == "npy":
        return npy_reply(encoding.z if encoding.z is not None else encoding.mu, headers)
    body = {
        "model": model.name,
        "latent_dim": model.manifest.latent_dim,
        "mu": encoding.mu,
        "logvar": encoding.logvar,
        "seed": seed,
        "z": encoding.z,
    }
    return json_reply(body, headers)


@routes.post(
    "/encode",
    query=EncodeQuery,
    body=doc.image_body(),
    responses={**doc.ENCODE_OK, **doc.errors(404, 409, 413, 415, 422, 503)},
)
async def encode(request: DataRequest) -> Reply:
    """Encode images to q(z|x): mu and logvar [N, D] per image, and `samples` draws of z [N, k, D]."""
    query = request.query(EncodeQuery)
    model = request.model(query.model, query.version)
    limits = request.state.limits
    fmt = choose_format(query.fmt, request.accept, ("json", "npy"), "json", request.path)
    uploads = await receive_images(request, limits)
    # Counts are checked on the files as received, before any of them is decoded.
    at_most(len(uploads.files) * query.samples, limits.max_latents, "samples x images", "VAE_MAX_LATENTS")
    labels = merge_labels(query.label, uploads.labels, limit=limits.max_images, setting="VAE_MAX_IMAGES")
    n, dim = len(uploads.files), model.manifest.latent_dim
    if fmt == "npy":  # z [N, k, D] when sampled, else mu [N, D]
        size = npy_bytes(n * dim * max(1, query.samples))
    else:
        size = JSON_FIELDS_BYTES + n * dim * (2 + query.samples) * JSON_NUMBER_BYTES
    check_answer_size(size, limits.max_response_bytes, f"{n} images' latents as {fmt}", "send fewer images or samples")
    images = await images_for(uploads, model.manifest.image, limits)
    rng, seed = rng_for(query.seed) if query.samples else (None, None)
    numbers = n * dim * (2 + query.samples)
    return await rendered(
        lambda then: model.encode(images, labels, samples=query.samples, rng=rng, then=then),
        partial(_encoding, fmt, model, seed),
        pixels=0 if fmt == "npy" else numbers // 4,
    )


@routes.post(
    "/decode",
    query=DecodeQuery,
    body=doc.latents_body(),
    responses={
        **doc.images_ok("images decoded from the latents (mean of p(x|z))", labels=None),
        **doc.errors(404, 409, 413, 415, 422, 503),
    },
)
async def decode(request: DataRequest) -> Reply:
    """Decode latent vectors [N, D] (+ labels for a conditional model) to images."""
    query = request.query(DecodeQuery)
    model = request.model(query.model, query.version)
    limits = request.state.limits
    fmt = choose_format(query.fmt, request.accept, ("png", "json", "npy"), "png", request.path)
    scale = Scale.of(query.scale, limits)
    z, body_labels = await read_latents(request, model.manifest.latent_dim, limits)
    labels = merge_labels(query.label, body_labels, limit=limits.max_latents, setting="VAE_MAX_LATENTS")
    shape = (len(z), *model.image_shape)
    scale.check(fmt, shape)

    def render(decoded: Decoding) -> Reply:
        fields = {"model": model.name, "labels": model.labels.names_of(decoded.labels)}
        return images_reply(fmt, decoded.images, fields=fields, headers={**model.reply_headers}, scale=scale)

    return await rendered(
        lambda then: model.decode_labelled(z, labels, then=then), render, pixels=png_work(fmt, shape, scale)
    )


def _reconstruction(fmt: Format, model: ServedModel, scale: Scale, result: Reconstruction) -> Reply:
    errors = result.errors
    headers = {**model.reply_headers, "X-Reconstruction-Error": ",".join(f"{e:.4f}" for e in errors)}
    recon = result.images
    if fmt == "png":  # each input beside its reconstruction
        pairs = np.stack([result.inputs, recon], axis=1).reshape(-1, *recon.shape[1:])
        columns = 2 * int(np.ceil(np.sqrt(len(recon))))
        return images_reply(fmt, pairs, fields={}, headers=headers, columns=columns, scale=scale)
    fields = {
        "model": model.name,
        "labels": model.labels.names_of(result.labels),
        "reconstruction_error": errors.tolist(),
    }
    return images_reply(fmt, recon, fields=fields, headers=headers, scale=scale)


@routes.post(
    "/reconstruct",
    query=ReconstructQuery,
    body=doc.image_body(),
    responses={
        **doc.images_ok(
            "reconstructions (decoded at z = mu) and per-image squared error", labels=None, reconstruction_error=[12.7]
        ),
        **doc.errors(404, 409, 413, 415, 422, 503),  # 409: a label for a model that takes none
    },
)
async def reconstruct(request: DataRequest) -> Reply:
    """Encode and decode images; `reconstruction_error` is the sum of squared pixel errors (in [0, 1]) per image.

    json (the default) holds the reconstructions and the errors; png shows each input beside its
    reconstruction; npy is the reconstructions [N, C, H, W].
    """
    query = request.query(ReconstructQuery)
    model = request.model(query.model, query.version)
    limits = request.state.limits
    fmt = choose_format(query.fmt, request.accept, ("json", "png", "npy"), "json", request.path)
    scale = Scale.of(query.scale, limits)
    uploads = await receive_images(request, limits)
    labels = merge_labels(query.label, uploads.labels, limit=limits.max_images, setting="VAE_MAX_IMAGES")
    n = len(uploads.files)
    shown = (2 * n if fmt == "png" else n, *model.image_shape)  # png: each input beside its reconstruction
    scale.check(fmt, shown, 2 * int(np.ceil(np.sqrt(n))) if fmt == "png" else None)
    images = await images_for(uploads, model.manifest.image, limits)
    return await rendered(
        lambda then: model.reconstruct(images, labels, then=then),
        partial(_reconstruction, fmt, model, scale),
        pixels=png_work(fmt, shown, scale),
    )

"""Routes that take data in: POST /encode, POST /decode, POST /reconstruct."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response

from .. import openapi as doc
from ..deps import Model, Settings
from ..inputs import decode_images, merge_labels, read_images, read_latents, receive_images
from ..outputs import choose_format, images_response, json_response, npy_response
from .compiled import CompiledRoute
from .params import FormatQuery, LabelQuery, ScaleQuery, SeedQuery, at_most, rng_for

router = APIRouter(tags=["inference"], route_class=CompiledRoute)


@router.post(
    "/encode",
    response_model=None,
    openapi_extra=doc.image_body(),
    responses={**doc.ENCODE_OK, **doc.errors(404, 409, 413, 415, 422, 503)},
)
async def encode(
    request: Request,
    model: Model,
    settings: Settings,
    samples: Annotated[
        int, Query(ge=0, description="z draws per image from q(z|x) (0: none; 409 for an ae)", examples=[4])
    ] = 0,
    seed: SeedQuery = None,
    label: LabelQuery = None,
    fmt: FormatQuery = None,
) -> Response:
    """Encode images to q(z|x): mu and logvar [N, D] per image, and `samples` draws of z [N, k, D]."""
    fmt = choose_format(request, fmt, ("json", "npy"), "json")
    at_most(samples, settings.max_samples, "samples", "VAE_MAX_SAMPLES")
    uploads = await receive_images(request, settings)
    # Counts are checked on the files as received, before any of them is decoded.
    at_most(len(uploads.files) * samples, settings.max_latents, "samples x images", "VAE_MAX_LATENTS")
    labels = merge_labels(label, uploads.labels, limit=settings.max_images, setting="VAE_MAX_IMAGES")
    images = await decode_images(uploads, model.manifest.image, settings)
    rng, drawn_seed = rng_for(seed) if samples else (None, None)
    encoding = await model.encode(images.array, labels, samples=samples, rng=rng)
    z = encoding.z
    headers = {"X-Model": model.name, **({"X-Seed": str(drawn_seed)} if drawn_seed is not None else {})}
    if fmt == "npy":
        return npy_response(z if z is not None else encoding.mu, headers)
    body = {
        "model": model.name,
        "latent_dim": model.manifest.latent_dim,
        "mu": encoding.mu,
        "logvar": encoding.logvar,
        "seed": drawn_seed,
        "z": z,
    }
    numbers = encoding.mu.size * 2 + (0 if z is None else z.size)
    return await json_response(body, headers, numbers=numbers)


@router.post(
    "/decode",
    response_model=None,
    openapi_extra=doc.latents_body(),
    responses={
        **doc.images_ok("images decoded from the latents (mean of p(x|z))", labels=None),
        **doc.errors(404, 409, 413, 415, 422, 503),
    },
)
async def decode(
    request: Request,
    model: Model,
    settings: Settings,
    scale: ScaleQuery,
    label: LabelQuery = None,
    fmt: FormatQuery = None,
) -> Response:
    """Decode latent vectors [N, D] (+ labels for a conditional model) to images."""
    fmt = choose_format(request, fmt, ("png", "json", "npy"), "png")
    z, body_labels = await read_latents(request, model.manifest.latent_dim, settings)
    labels = merge_labels(label, body_labels, limit=settings.max_latents, setting="VAE_MAX_LATENTS")
    decoded = await model.decode_labelled(z, labels)
    fields = {"model": model.name, "labels": model.label_names(decoded.labels)}
    return await images_response(fmt, decoded.images, fields=fields, headers={"X-Model": model.name}, scale=scale)


@router.post(
    "/reconstruct",
    response_model=None,
    openapi_extra=doc.image_body(),
    responses={
        **doc.images_ok(
            "reconstructions (decoded at z = mu) and per-image squared error", labels=None, reconstruction_error=[12.7]
        ),
        **doc.errors(404, 409, 413, 415, 422, 503),  # 409: a label for a model that takes none
    },
)
async def reconstruct(
    request: Request,
    model: Model,
    settings: Settings,
    scale: ScaleQuery,
    label: LabelQuery = None,
    fmt: FormatQuery = None,
) -> Response:
    """Encode and decode images; `reconstruction_error` is the sum of squared pixel errors (in [0, 1]) per image.

    json (the default) holds the reconstructions and the errors; png shows each input beside its
    reconstruction; npy is the reconstructions [N, C, H, W].
    """
    fmt = choose_format(request, fmt, ("json", "png", "npy"), "json")
    images = await read_images(request, model.manifest.image, settings)
    labels = merge_labels(label, images.labels, limit=settings.max_images, setting="VAE_MAX_IMAGES")
    recon, errors, resolved = await model.reconstruct(images.array, labels)
    headers = {"X-Model": model.name, "X-Reconstruction-Error": ",".join(f"{e:.4f}" for e in errors)}
    if fmt == "png":  # each input beside its reconstruction
        pairs = np.stack([images.array, recon], axis=1).reshape(-1, *recon.shape[1:])
        columns = 2 * int(np.ceil(np.sqrt(len(recon))))
        return await images_response(fmt, pairs, fields={}, headers=headers, columns=columns, scale=scale)
    fields = {"model": model.name, "labels": model.label_names(resolved), "reconstruction_error": errors.tolist()}
    return await images_response(fmt, recon, fields=fields, headers=headers, scale=scale)

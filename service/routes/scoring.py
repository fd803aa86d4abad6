"""POST /score: importance-weighted -log p(x) per image, its ELBO terms, and its percentile among held-out images."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from .. import openapi as doc
from .. import scoring
from ..deps import Model, Settings
from ..inputs import decode_images, merge_labels, receive_images
from ..outputs import json_response
from .compiled import CompiledRoute
from .params import LabelQuery, SeedQuery, at_most, rng_for

router = APIRouter(tags=["scoring"], route_class=CompiledRoute)

DEFAULT_SAMPLES = 64
_EXAMPLE_SCORE = {
    "nll": 93.1,
    "elbo": -101.7,
    "reconstruction": 75.4,
    "kl": 26.0,
    "squared_error": 5.2,
    "percentile": 48.0,
    "anomalous": False,
}
_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "one entry per image, in order (an ae: squared_error, percentile and anomalous only)",
        "content": {
            "application/json": {
                "example": {"model": "mnist-vae", "samples": 64, "seed": 42, "scores": [_EXAMPLE_SCORE]}
            }
        },
    }
}


@router.post(
    "/score",
    response_model=None,
    openapi_extra=doc.image_body(),
    responses={**_OK, **doc.errors(404, 409, 413, 415, 422, 503)},
)
async def score(
    request: Request,
    model: Model,
    settings: Settings,
    samples: Annotated[
        int,
        Query(
            ge=1,
            description="importance samples z ~ q(z|x) per image (at most VAE_MAX_SCORE_SAMPLES; images x samples "
            "at most VAE_MAX_SCORE_ROWS); unused by an ae",
            examples=[64],
        ),
    ] = DEFAULT_SAMPLES,
    seed: SeedQuery = None,
    label: LabelQuery = None,
) -> Response:
    """How well the model explains each image: `nll` is the importance-weighted estimate of -log p(x) in nats.

    A Bernoulli model scores a grey image by one binarization drawn from `seed` (as its held-out figures were
    measured); `percentile` places the score among the held-out images' and `anomalous` is percentile >
    VAE_ANOMALY_PERCENTILE. An ae is scored by its squared reconstruction error.
    """
    at_most(samples, settings.max_score_samples, "samples", "VAE_MAX_SCORE_SAMPLES")
    uploads = await receive_images(request, settings)
    k = samples if model.has_posterior else 0
    # Counted on the files as received, before any is decoded or any z is drawn.
    at_most(len(uploads.files) * k, settings.max_score_rows, "images x samples", "VAE_MAX_SCORE_ROWS")
    given = merge_labels(label, uploads.labels, limit=settings.max_images, setting="VAE_MAX_IMAGES")
    labels = model.labels_for(given, len(uploads.files), required=model.conditional)
    images = await decode_images(uploads, model.manifest.image, settings)
    rng, seed = rng_for(seed)
    result = await scoring.score(model, images.array, labels, k, rng, settings.anomaly_percentile)
    body = {"model": model.name, "samples": k, "seed": seed, "scores": result.rows()}
    return await json_response(body, {"X-Model": model.name, "X-Seed": str(seed)}, numbers=7 * len(images.array))

"""POST /score: importance-weighted -log p(x) per image, its ELBO terms, and its percentile among held-out images."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from ...ops import scoring
from .. import openapi as doc
from ..query import LabelList, ModelQuery, Seed, at_most, limit, rng_for
from ..render import json_reply_offloaded
from ..reply import Reply
from ..request import DataRequest
from ..uploads import decode_images, merge_labels, receive_images
from .routing import Routes

routes = Routes(tags=["scoring"])

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


class ScoreQuery(ModelQuery):
    samples: Annotated[
        int,
        Field(
            ge=1,
            description="importance samples z ~ q(z|x) per image (at most VAE_MAX_SCORE_SAMPLES; images x samples "
            "at most VAE_MAX_SCORE_ROWS); unused by an ae",
            examples=[64],
            json_schema_extra=limit("max_score_samples"),
        ),
    ] = DEFAULT_SAMPLES
    seed: Seed = None
    label: LabelList = None


@routes.post(
    "/score", query=ScoreQuery, body=doc.image_body(), responses={**_OK, **doc.errors(404, 409, 413, 415, 422, 503)}
)
async def score(request: DataRequest) -> Reply:
    """How well the model explains each image: `nll` is the importance-weighted estimate of -log p(x) in nats.

    A Bernoulli model scores a grey image by one binarization drawn from `seed` (as its held-out figures were
    measured); `percentile` places the score among the held-out images' and `anomalous` is percentile >
    VAE_ANOMALY_PERCENTILE. An ae is scored by its squared reconstruction error.
    """
    query = request.query(ScoreQuery)
    model = request.model(query.model, query.version)
    limits = request.state.limits
    uploads = await receive_images(request, limits)
    k = query.samples if model.has_posterior else 0
    # Counted on the files as received, before any is decoded or any z is drawn.
    at_most(len(uploads.files) * k, limits.max_score_rows, "images x samples", "VAE_MAX_SCORE_ROWS")
    given = merge_labels(query.label, uploads.labels, limit=limits.max_images, setting="VAE_MAX_IMAGES")
    labels = model.labels.resolve(given, len(uploads.files), required=model.conditional)
    images = await decode_images(uploads, model.manifest.image, limits)
    rng, seed = rng_for(query.seed)
    result = await scoring.score(model, images, labels, k, rng, limits.anomaly_percentile)
    body = {"model": model.name, "samples": k, "seed": seed, "scores": result.rows()}
    return await json_reply_offloaded(body, {**model.reply_headers, "X-Seed": str(seed)}, numbers=7 * len(images))

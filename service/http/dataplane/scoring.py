"""POST /score: importance-weighted -log p(x) per image, its ELBO terms, its percentile among held-out images and the
out-of-distribution test; POST /classify: a conditional model's label probabilities p(y|x)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
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
    "ess": 2.7,
    "squared_error": 5.2,
    "complexity": 371.5,
    "pixel_nll": 1012.4,
    "percentile": 48.0,
    "ood": 3.1,
    "ood_percentile": 52.0,
    "anomalous": False,
}
_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "one entry per image, in order (an ae: no likelihood terms; a conditional model adds "
        "label_probabilities)",
        "content": {
            "application/json": {
                "example": {"model": "mnist-vae", "samples": 64, "seed": 42, "scores": [_EXAMPLE_SCORE]}
            }
        },
    }
}


Samples = Annotated[
    int,
    Field(
        ge=1,
        description="importance samples z ~ q(z|x) per image, and per label for a conditional model (at most "
        "VAE_MAX_SCORE_SAMPLES; images x samples x labels at most VAE_MAX_SCORE_ROWS); unused by an ae",
        examples=[64],
        json_schema_extra=limit("max_score_samples"),
    ),
]


class ScoreQuery(ModelQuery):
    samples: Samples = DEFAULT_SAMPLES
    seed: Seed = None
    label: LabelList = None


@routes.post(
    "/score", query=ScoreQuery, body=doc.image_body(), responses={**_OK, **doc.errors(404, 409, 413, 415, 422, 503)}
)
async def score(request: DataRequest) -> Reply:
    """How well the model explains each image, and whether it is like the training data at all.

    `nll` is the importance-weighted estimate of -log p(x) in nats (a conditional model without `label`: summed
    over its labels, with `label_probabilities` p(y|x)), `ess` the effective sample size of its importance
    weights (near 1: the estimate rests on one draw; trust it less). A Bernoulli model scores a grey image by one
    binarization drawn from `seed` (as its held-out figures were measured). `percentile` places the `nll` among
    the held-out images'. `ood` is the -log density of the image's statistics (nll, KL, reconstruction,
    `complexity`, its compressed length, and `pixel_nll`, its -log likelihood under each pixel's histogram over
    training images) under a mixture fitted to those of in-distribution images never trained on, `ood_percentile`
    its place among theirs, and `anomalous` is ood_percentile > VAE_ANOMALY_PERCENTILE. An ae is scored by its
    squared reconstruction error.
    """
    query = request.query(ScoreQuery)
    model = request.model(query.model, query.version)
    limits = request.state.limits
    uploads = await receive_images(request, limits)
    k = query.samples if model.has_posterior else 0
    given = merge_labels(query.label, uploads.labels, limit=limits.max_images, setting="VAE_MAX_IMAGES")
    labels = model.labels.resolve(given, len(uploads.files), required=False)
    # Counted on the files as received, before any is decoded or any z is drawn: a conditional model draws k for
    # each of its labels.
    rows = len(uploads.files) * k * (len(model.class_names) if model.conditional else 1)
    at_most(rows, limits.max_score_rows, "images x samples x labels", "VAE_MAX_SCORE_ROWS")
    images = await decode_images(uploads, model.manifest.image, limits)
    rng, seed = rng_for(query.seed)
    result = await scoring.score(model, images, labels, k, rng, limits.anomaly_percentile)
    body = {"model": model.name, "samples": k, "seed": seed, "scores": result.rows()}
    numbers = (12 + len(model.class_names)) * len(images)
    return await json_reply_offloaded(body, {**model.reply_headers, "X-Seed": str(seed)}, numbers=numbers)


class ClassifyQuery(ModelQuery):
    samples: Samples = DEFAULT_SAMPLES
    top: Annotated[int, Field(ge=1, le=1000, description="labels listed per image, most probable first")] = 3
    seed: Seed = None


_CLASSIFIED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "one entry per image, in order: the most probable label and the `top` most probable",
        "content": {
            "application/json": {
                "example": {
                    "model": "mnist-cvae",
                    "samples": 64,
                    "seed": 42,
                    "labels": [
                        {
                            "label": "7",
                            "probability": 0.98,
                            "top": [{"label": "7", "probability": 0.98}, {"label": "9", "probability": 0.02}],
                            "nll": 90.2,
                            "ess": 2.5,
                        }
                    ],
                }
            }
        },
    }
}


@routes.post(
    "/classify",
    query=ClassifyQuery,
    body=doc.image_body(),
    responses={**_CLASSIFIED, **doc.errors(404, 409, 413, 415, 422, 503)},
)
async def classify(request: DataRequest) -> Reply:
    """The most probable labels of each image under a conditional model, by Bayes' rule on its density.

    p(y|x) = p(x|y) p(y) / p(x) with a uniform p(y), each p(x|y) estimated with `samples` importance samples (as
    /score does); `nll` is -log p(x) summed over the labels and `ess` the effective sample size of its weights.
    """
    query = request.query(ClassifyQuery)
    model = request.conditional_model(query.model, query.version, task="classify images into labels")
    limits = request.state.limits
    uploads = await receive_images(request, limits)
    names = model.class_names
    rows = len(uploads.files) * query.samples * len(names)
    at_most(rows, limits.max_score_rows, "images x samples x labels", "VAE_MAX_SCORE_ROWS")
    images = await decode_images(uploads, model.manifest.image, limits)
    rng, seed = rng_for(query.seed)
    result = await scoring.score(model, images, None, query.samples, rng, limits.anomaly_percentile)
    assert result.label_probabilities is not None and result.nll is not None and result.ess is not None
    top = min(query.top, len(names))
    labels = []
    for probs, nll, ess in zip(result.label_probabilities, result.nll, result.ess, strict=True):
        order = np.argsort(-probs, kind="stable")[:top]
        ranked = [{"label": names[i], "probability": float(probs[i])} for i in order]
        labels.append({**ranked[0], "top": ranked, "nll": float(nll), "ess": float(ess)})
    body = {"model": model.name, "samples": query.samples, "seed": seed, "labels": labels}
    numbers = (4 + 2 * top) * len(images)
    return await json_reply_offloaded(body, {**model.reply_headers, "X-Seed": str(seed)}, numbers=numbers)

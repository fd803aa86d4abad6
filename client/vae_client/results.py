"""What the client's methods return when a route answers more than one array: small dataclasses of numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Encoding:
    """POST /encode: q(z|x) per image, and `samples` draws of z when asked for."""

    model: str
    mu: np.ndarray  # [N, D]
    logvar: np.ndarray  # [N, D]
    z: np.ndarray | None  # [N, k, D] with samples=k, else None
    seed: int | None  # the seed of the draws (None without samples)


@dataclass(frozen=True, eq=False)
class Generated:
    """GET /sample and /generate: images from the prior, and what repeats them (the same seed, the same images)."""

    model: str
    images: np.ndarray  # [N, C, H, W] in [0, 1]
    seed: int
    prior: str  # "fitted" or "standard": the prior that was used


@dataclass(frozen=True, eq=False)
class Reconstruction:
    """POST /reconstruct: reconstructions decoded at z = mu, and each image's squared error."""

    model: str
    images: np.ndarray  # [N, C, H, W] in [0, 1]
    error: np.ndarray  # [N] sum of squared pixel errors, to 4 decimals (as header X-Reconstruction-Error carries it)


@dataclass(frozen=True)
class Score:
    """One image's scores from POST /score; an ae has no likelihood, so only squared_error and the percentile."""

    squared_error: float
    nll: float | None = None  # importance-weighted -log p(x), nats
    elbo: float | None = None
    reconstruction: float | None = None
    kl: float | None = None
    percentile: float | None = None  # among the held-out images' scores (None: the manifest has no quantiles)
    anomalous: bool | None = None  # decided on the out-of-distribution test when the model has one
    ess: float | None = None  # effective sample size of the importance weights: near 1, trust nll less
    complexity: float | None = None  # compressed length of what was scored, nats
    pixel_nll: float | None = None  # -log likelihood under each pixel's histogram over training images, nats
    ood: float | None = None  # -log density of the image's statistics under the in-distribution mixture
    ood_percentile: float | None = None
    label_probabilities: dict[str, float] | None = None  # p(y|x) of a conditional model

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Score:
        return cls(
            squared_error=row["squared_error"],
            nll=row.get("nll"),
            elbo=row.get("elbo"),
            reconstruction=row.get("reconstruction"),
            kl=row.get("kl"),
            percentile=row.get("percentile"),
            anomalous=row.get("anomalous"),
            ess=row.get("ess"),
            complexity=row.get("complexity"),
            pixel_nll=row.get("pixel_nll"),
            ood=row.get("ood"),
            ood_percentile=row.get("ood_percentile"),
            label_probabilities=row.get("label_probabilities"),
        )


@dataclass(frozen=True)
class Scores:
    """POST /score: one Score per image, in order, and what the estimate used."""

    model: str
    samples: int  # importance samples per image (0 for an ae)
    seed: int
    scores: list[Score]

    @property
    def nll(self) -> np.ndarray:
        """-log p(x) per image [N] (NaN where the model has none)."""
        return np.array([np.nan if s.nll is None else s.nll for s in self.scores])


@dataclass(frozen=True)
class Classified:
    """POST /classify: each image's most probable label under a conditional model, by p(y|x)."""

    model: str
    samples: int  # importance samples per image and label
    seed: int
    labels: list[str]  # the most probable label of each image
    probability: np.ndarray  # [N] its p(y|x)
    top: list[list[tuple[str, float]]]  # the most probable labels of each image with p(y|x), most probable first
    nll: np.ndarray  # [N] -log p(x) summed over the labels
    ess: np.ndarray  # [N] effective sample size of the importance weights

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Classified:
        rows = body["labels"]
        return cls(
            body["model"],
            body["samples"],
            body["seed"],
            [r["label"] for r in rows],
            np.array([r["probability"] for r in rows]),
            [[(t["label"], t["probability"]) for t in r["top"]] for r in rows],
            np.array([r["nll"] for r in rows]),
            np.array([r["ess"] for r in rows]),
        )

    @classmethod
    def joined(cls, parts: list[Classified]) -> Classified:
        first = parts[0]
        return cls(
            first.model,
            first.samples,
            first.seed,
            [label for p in parts for label in p.labels],
            np.concatenate([p.probability for p in parts]),
            [t for p in parts for t in p.top],
            np.concatenate([p.nll for p in parts]),
            np.concatenate([p.ess for p in parts]),
        )

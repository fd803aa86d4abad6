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
    anomalous: bool | None = None

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

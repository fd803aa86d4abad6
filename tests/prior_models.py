"""Tiny model folders with a fitted prior and held-out score quantiles (what an export writes), for service tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaeformat.files import sha256_file
from vaeformat.manifest import PriorFile, load_manifest, write_manifest
from vaeformat.prior import PRIOR_FILE, FittedPrior, write_prior


def mixture(classes: int, latent_dim: int, *, offset: float = 5.0) -> FittedPrior:
    """Two well-separated components per class (class c's means at +-offset*(c+1) on axis 0), unit covariances."""
    weights = np.tile([0.25, 0.75], (classes, 1))
    means = np.zeros((classes, 2, latent_dim))
    for c in range(classes):
        means[c, 0, 0], means[c, 1, 0] = -offset * (c + 1), offset * (c + 1)
    scales = np.tile(np.eye(latent_dim), (classes, 2, 1, 1))
    return FittedPrior(weights, means, scales)


def add_prior(folder: Path, prior: FittedPrior | None = None, quantiles: dict | None = None) -> FittedPrior:
    """Write prior.npz into a tiny model folder and name it (and the quantiles) in its manifest."""
    m = load_manifest(folder)
    prior = prior or mixture(len(m.labels or [None]), m.latent_dim)
    path = write_prior(Path(folder) / PRIOR_FILE, prior)
    entry = PriorFile(
        path=PRIOR_FILE, sha256=sha256_file(path), components=prior.components(), fitted_on=10, selection="test"
    )
    metrics = m.metrics.model_copy(update={"score_quantiles": quantiles}) if quantiles else m.metrics
    write_manifest(folder, m.model_copy(update={"prior": entry, "metrics": metrics}))
    return prior

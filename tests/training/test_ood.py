"""training/ood.py: the mixture fitted to in-distribution statistics, and the refusal of an unrecoverable split."""

from __future__ import annotations

import numpy as np

from training.ood import fit
from vaeformat.estimates import OodTest


def test_the_fit_chooses_its_components_and_its_quantiles_rank_the_fit_images():
    rng = np.random.default_rng(0)
    # Two kinds of in-distribution image (say sandals and coats): two clusters of statistics.
    n = 600
    kind = rng.random(n) < 0.5
    stats = {
        "nll": np.where(kind, 150, 300) + rng.normal(0, 10, n),
        "kl": np.where(kind, 10, 20) + rng.normal(0, 1, n),
        "reconstruction": np.where(kind, 140, 280) + rng.normal(0, 10, n),
        "complexity": np.where(kind, 300, 700) + rng.normal(0, 30, n),
    }
    fitted = fit(stats, True, np.arange(n), True, "validation split")
    assert len(fitted.weights) >= 2 and fitted.rows == list(range(n)) and len(fitted.quantiles) == 101
    test = OodTest(fitted)
    pct = test.percentile(test.distance(stats))
    assert 0.5 <= (pct > 99).mean() * 100 <= 1.5  # 1% of the fit images lie above the 99th percentile
    # Between the clusters (likely enough, but unlike either kind) is out; so are too likely and too unlikely.
    probes = {
        "nll": np.array([225.0, 20.0, 2000.0]),
        "kl": np.array([15.0, 10.0, 20.0]),
        "reconstruction": np.array([210.0, 10.0, 1900.0]),
        "complexity": np.array([500.0, 300.0, 700.0]),
    }
    assert (test.percentile(test.distance(probes)) > 99).all()


def test_few_images_fit_few_components():
    rng = np.random.default_rng(1)
    stats = {"squared_error": rng.gamma(4, 1, 150), "complexity": rng.normal(370, 40, 150)}
    fitted = fit(stats, False, np.arange(150), True, "validation split")
    assert fitted.features == ["squared_error", "complexity"] and len(fitted.weights) == 1  # 100 images each

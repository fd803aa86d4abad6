"""service/scoring.py: the importance-weighted estimate against exact values, and the percentile."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.ops.scoring import (
    binarize,
    importance_weighted,
    log_bernoulli,
    log_gaussian,
    log_normal,
    log_standard_normal,
    percentiles,
)


def linear_gaussian(x: float, a: float, s: float):
    """z ~ N(0, 1), x | z ~ N(a z, s^2) on one pixel: exact log p(x) and the exact posterior (mean, variance)."""
    log_px = -0.5 * (math.log(2 * math.pi * (a * a + s * s)) + x * x / (a * a + s * s))
    var = 1.0 / (1.0 + a * a / (s * s))
    return log_px, var * a * x / (s * s), var


@pytest.mark.parametrize("k", [1, 64])
def test_with_the_exact_posterior_as_proposal_every_draw_gives_log_p_x_exactly(k):
    x, a, s = 1.3, 2.0, 0.5
    log_px, mean, var = linear_gaussian(x, a, s)
    rng = np.random.default_rng(0)
    z = (mean + math.sqrt(var) * rng.standard_normal((1, k, 1))).astype(np.float32)  # [N=1, K, D=1]
    image = np.full((1, 1, 1, 1), x, np.float32)
    log_px_z = log_gaussian(a * z[..., None, None], image[:, None], s)  # [1, K]
    log_qz = log_normal(z, np.full((1, 1, 1), mean), np.full((1, 1, 1), math.log(var)))
    nll, elbo = importance_weighted(log_px_z, log_standard_normal(z), log_qz)
    assert nll[0] == pytest.approx(-log_px, abs=1e-5)
    assert elbo[0] == pytest.approx(log_px, abs=1e-5)  # a tight bound: q is the posterior


def test_with_a_poor_proposal_the_estimate_is_an_upper_bound_that_closes_as_k_grows():
    x, a, s = 1.3, 2.0, 0.5
    log_px, _, _ = linear_gaussian(x, a, s)
    rng = np.random.default_rng(1)
    gaps = []
    for n, k in ((400, 1), (400, 10), (400, 1000), (1, 200_000)):  # n repeats of the same image, k draws each
        image = np.full((n, 1, 1, 1), x, np.float32)
        z = rng.standard_normal((n, k, 1))  # the prior as proposal: a poor q
        log_px_z = log_gaussian(a * z[..., None, None], image[:, None], s)
        nll, elbo = importance_weighted(log_px_z, log_standard_normal(z), log_standard_normal(z))
        gaps.append(nll.mean() + log_px)  # E[nll] - (-log p(x)) >= 0, shrinking with k
        assert (-elbo >= nll - 1e-9).all()  # the ELBO is the looser bound
    assert gaps[0] > gaps[1] > gaps[2] and gaps[0] > 0.1
    assert gaps[-1] == pytest.approx(0.0, abs=0.02)


def test_bernoulli_log_likelihood_is_exact_and_finite_for_extreme_logits():
    logits = np.array([-50.0, -2.0, 0.0, 3.0, 80.0], np.float32).reshape(1, 1, 1, 5)
    x = np.array([1.0, 0.0, 1.0, 1.0, 0.0], np.float32).reshape(1, 1, 1, 5)
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    with np.errstate(divide="ignore"):
        naive = (x * np.log(p) + (1 - x) * np.log1p(-p)).sum()
    assert log_bernoulli(logits, x)[0] == pytest.approx(
        -50.0 - 0.1269280110429725 - math.log(2) - 0.04858735157374206 - 80.0
    )
    assert np.isfinite(log_bernoulli(logits, x)).all() and not np.isfinite(naive)


def test_one_binarization_per_seed_keeps_black_and_white_pixels():
    grey = np.array([0.0, 1.0, 0.3, 0.7] * 2500, np.float32).reshape(1, 1, 100, 100)
    a = binarize(grey, np.random.default_rng(3))
    assert np.array_equal(a, binarize(grey, np.random.default_rng(3)))
    flat = a.reshape(-1, 4)
    assert (flat[:, 0] == 0).all() and (flat[:, 1] == 1).all()
    assert flat[:, 2].mean() == pytest.approx(0.3, abs=0.03) and flat[:, 3].mean() == pytest.approx(0.7, abs=0.03)


def test_percentile_interpolates_among_the_held_out_quantiles_and_saturates():
    quantiles = list(np.linspace(10.0, 110.0, 101))  # held-out scores from 10 to 110, uniformly
    got = percentiles(np.array([0.0, 10.0, 60.0, 109.5, 500.0]), quantiles)
    assert np.allclose(got, [0.0, 0.0, 50.0, 99.5, 100.0])

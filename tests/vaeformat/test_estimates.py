"""vaeformat/estimates.py: the densities and the importance-weighted estimate against exact values, the label-free
estimate, p(y|x), the effective sample size, complexity and the test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vaeformat.estimates import (
    OodTest,
    binarize,
    columns,
    complexity,
    from_weights,
    log_bernoulli,
    log_gaussian,
    log_normal,
    log_standard_normal,
    mixed,
)
from vaeformat.manifest import OodFit


def test_one_label_is_the_log_mean_of_the_weights():
    log_w = np.log(np.array([[[1.0, 2.0, 3.0, 6.0]]]))
    e = from_weights(log_w)
    assert e.nll[0] == pytest.approx(-math.log(3.0))
    assert e.label_log_probs is None and e.label_nll.shape == (1, 1)
    assert e.ess[0] == pytest.approx(12.0**2 / (1 + 4 + 9 + 36))


def test_labels_combine_exactly_with_a_uniform_prior_and_bayes_gives_p_y_given_x():
    # p(x|y=0) = 0.2, p(x|y=1) = 0.6 (each the mean of its weights): p(x) = 0.4, p(y|x) = (0.25, 0.75).
    log_w = np.log(np.array([[[0.1, 0.3], [0.6, 0.6]]]))
    e = from_weights(log_w)
    assert e.nll[0] == pytest.approx(-math.log(0.4))
    assert e.label_log_probs is not None
    assert np.exp(e.label_log_probs[0]) == pytest.approx([0.25, 0.75])
    assert np.exp(-e.label_nll[0]) == pytest.approx([0.2, 0.6])
    assert mixed(np.array([[10.0, 20.0]]), e)[0] == pytest.approx(17.5)
    # The label-free -log p(x) never exceeds a label's -log p(x|y) + log C.
    assert e.nll[0] <= e.label_nll[0].min() + math.log(2) + 1e-12


def test_the_effective_sample_size_is_k_for_equal_weights_and_near_one_for_one_dominant_weight():
    equal = from_weights(np.zeros((1, 1, 64)))
    one = from_weights(np.r_[0.0, np.full(63, -50.0)].reshape(1, 1, 64))
    assert equal.ess[0] == pytest.approx(64) and one.ess[0] == pytest.approx(1.0)


def test_huge_weights_do_not_overflow():
    e = from_weights(np.array([[[5000.0, 4999.0]]]))
    assert np.isfinite(e.nll).all() and e.nll[0] == pytest.approx(-(5000 + math.log((1 + math.exp(-1)) / 2)))


def test_complexity_counts_what_a_compressor_needs():
    rng = np.random.default_rng(0)
    blank, noise = np.zeros((1, 1, 28, 28), np.float32), rng.random((1, 1, 28, 28), dtype=np.float32)
    binary = (noise > 0.5).astype(np.float32)
    assert complexity(blank)[0] < complexity(binary)[0] < complexity(noise)[0]
    # 784 random bits need at least 784 bits: the compressor cannot beat the entropy.
    assert complexity(binary)[0] >= 784 * math.log(2)


def _fit(**kw) -> OodFit:
    fields = dict(
        features=["nll", "complexity"],
        weights=[0.25, 0.75],
        means=[[100.0, 300.0], [200.0, 500.0]],
        precisions=[[[1.0, 0.0], [0.0, 1.0]], [[0.25, 0.0], [0.0, 0.25]]],
        quantiles=[0.0, 1.0, 4.0],
        samples=64,
        fitted_on="validation split",
        rows=[],
    )
    return OodFit(**{**fields, **kw})


def test_the_test_is_the_minus_log_density_under_the_mixture_and_its_percentile():
    test = OodTest(_fit())
    x = {"nll": np.array([100.0, 210.0]), "complexity": np.array([300.0, 500.0])}
    d = test.distance(x)

    # By hand: each component's log N plus its log weight, combined by log-sum-exp.
    def log_n(point, mean, var):
        return sum(
            -0.5 * math.log(2 * math.pi * var) - (p - m) ** 2 / (2 * var) for p, m in zip(point, mean, strict=True)
        )

    for i, point in enumerate([(100.0, 300.0), (210.0, 500.0)]):
        parts = [math.log(0.25) + log_n(point, (100, 300), 1.0), math.log(0.75) + log_n(point, (200, 500), 4.0)]
        top = max(parts)
        assert d[i] == pytest.approx(-(top + math.log(sum(math.exp(p - top) for p in parts))))
    assert test.percentile(np.array([0.5, 1.0, 100.0])) == pytest.approx([25.0, 50.0, 100.0])
    assert columns(x, ["complexity"]).shape == (2, 1)
    # Statistics beyond float range are infinitely far, not NaN; far points are far in every direction.
    assert test.distance({"nll": np.array([np.nan]), "complexity": np.array([0.0])})[0] == np.inf
    far = test.distance({"nll": np.array([-1e4, 1e4]), "complexity": np.array([300.0, 300.0])})
    assert (far > 1e5).all()


def test_a_fit_with_mismatched_shapes_or_weights_is_refused():
    with pytest.raises(ValueError, match="2x2x2"):
        _fit(precisions=[[[1.0]], [[1.0]]])
    with pytest.raises(ValueError, match="sum to 1"):
        _fit(weights=[0.5, 0.6])


def importance_weighted(log_px_z: np.ndarray, log_pz: np.ndarray, log_qz: np.ndarray):
    """(nll, elbo) per image from K draws each, as /score makes them: [N, K] -> [N], [N]."""
    log_w = log_px_z + log_pz - log_qz
    return from_weights(log_w[:, None, :]).nll, log_w.mean(1)


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

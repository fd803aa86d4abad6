"""vaeformat/estimates.py: the label-free estimate, p(y|x), the effective sample size, complexity and the test."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vaeformat.estimates import OodTest, columns, complexity, from_weights, mixed
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

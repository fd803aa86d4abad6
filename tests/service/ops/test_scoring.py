"""service/ops/scoring.py: the percentile among held-out scores (the estimates: tests/vaeformat/test_estimates.py)."""

from __future__ import annotations

import numpy as np

from service.ops.scoring import percentiles


def test_percentile_interpolates_among_the_held_out_quantiles_and_saturates():
    quantiles = list(np.linspace(10.0, 110.0, 101))  # held-out scores from 10 to 110, uniformly
    got = percentiles(np.array([0.0, 10.0, 60.0, 109.5, 500.0]), quantiles)
    assert np.allclose(got, [0.0, 0.0, 50.0, 99.5, 100.0])

"""service/ops/scoring.py: the percentile among held-out scores, and where the arithmetic runs (the estimates:
tests/vaeformat/test_estimates.py)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from service.ops import scoring
from service.ops.scoring import percentiles
from service.settings import Settings

from ..asgi import serve
from ..payloads import png


def test_percentile_interpolates_among_the_held_out_quantiles_and_saturates():
    quantiles = list(np.linspace(10.0, 110.0, 101))  # held-out scores from 10 to 110, uniformly
    got = percentiles(np.array([0.0, 10.0, 60.0, 109.5, 500.0]), quantiles)
    assert np.allclose(got, [0.0, 0.0, 50.0, 99.5, 100.0])


@pytest.mark.anyio
@pytest.mark.parametrize(("images", "samples", "on_the_loop"), [(1, 4, True), (4, 512, False)])
async def test_the_arithmetic_on_many_draws_runs_off_the_event_loop(zoo, monkeypatch, images, samples, on_the_loop):
    """K draws per image make the likelihood arithmetic as large as the decoder's output: past the inline size it
    runs on a worker thread, so that one large /score cannot stall every other request."""
    threads: list[threading.Thread] = []
    original = scoring.log_bernoulli

    def noted(*args):
        threads.append(threading.current_thread())
        return original(*args)

    monkeypatch.setattr(scoring, "log_bernoulli", noted)
    files = [("file", (f"{i}.png", png(size=8), "image/png")) for i in range(images)]
    async with serve(Settings(models_dir=zoo)) as client:
        r = await client.post("/score", params={"model": "tiny-vae", "samples": samples}, files=files)
    assert r.status_code == 200 and len(r.json()["scores"]) == images
    assert threads and all((thread is threading.main_thread()) == on_the_loop for thread in threads)

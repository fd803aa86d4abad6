"""The same seed gives the same bytes, also while other requests share its batches (any provider).

On a GPU this holds only with TF32 off (VAE_CUDA_TF32=false, the default): with TF32 a row's result depends on
the rows beside it in the batch. On the CPU it holds by construction; the test runs unchanged on both.
"""

from __future__ import annotations

import asyncio
import re

import httpx

from .server import running_server
from .test_shipped_models import MODELS, first

TARGET = "/sample?n=1&seed=123&format={fmt}&model={model}"


def _rows_and_calls(metrics: str, model: str) -> tuple[float, float]:
    """(rows, onnxruntime calls) of the model's decoder so far, from the batch-size histogram."""
    found = {}
    for kind in ("sum", "count"):
        labels = rf'graph="decoder",model="{re.escape(model)}",version="[^"]*"'
        pattern = rf"vae_inference_batch_size_{kind}{{{labels}}} (\S+)"
        match = re.search(pattern, metrics)
        found[kind] = float(match.group(1)) if match else 0.0
    return found["sum"], found["count"]


async def _storm(url: str, model: str, fmt: str) -> list[bytes]:
    """20 copies of the target request among 60 others (n=1, other seeds), all in flight at once."""
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=80)) as client:
        targets = [client.get(TARGET.format(fmt=fmt, model=model)) for _ in range(20)]
        others = [client.get(f"/sample?n=1&seed={seed}&format={fmt}&model={model}") for seed in range(60)]
        responses = await asyncio.gather(*[*targets, *others])
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200][:2]
    return [r.content for r in responses[:20]]


def test_the_same_seed_gives_the_same_bytes_while_others_share_its_batches():
    model = first(lambda m: m.stochastic and not m.conditional)
    # A delay long enough that concurrent rows really meet in one batch on a machine this small.
    with running_server(MODELS, env={"VAE_MAX_BATCH_DELAY_MS": "20"}) as url:
        for fmt in ("npy", "png"):
            alone = httpx.get(url + TARGET.format(fmt=fmt, model=model)).content
            rows_before, calls_before = _rows_and_calls(httpx.get(f"{url}/metrics").text, model)
            crowded = asyncio.run(_storm(url, model, fmt))
            rows, calls = _rows_and_calls(httpx.get(f"{url}/metrics").text, model)
            # Every request is one row, so more rows than calls means some calls carried several requests.
            assert rows - rows_before > calls - calls_before, "no batch combined requests: the test proves nothing"
            assert all(body == alone for body in crowded), f"{fmt}: a crowded response differs from the one alone"

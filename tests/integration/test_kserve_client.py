"""KServe's Python client (`kserve.InferenceRESTClient`, protocol v2, unmodified) against a real server (issue 15)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from vaeformat.manifest import load_manifest

from .server import ROOT, running_server

kserve = pytest.importorskip("kserve")
LATENT_DIM = load_manifest(ROOT / "models" / "mnist-vae").latent_dim


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with running_server(ROOT / "models") as base:
        yield base


async def _infer(url: str, z: np.ndarray, binary: bool):
    async with kserve.InferenceRESTClient(kserve.RESTConfig(protocol="v2")) as client:
        assert await client.is_server_live(url) and await client.is_server_ready(url)
        assert await client.is_model_ready(url, "mnist-vae.decoder")
        assert not await client.is_model_ready(url, "mnist-vae.nothing")
        tensor = kserve.InferInput("z", list(z.shape), "FP32")
        tensor.set_data_from_numpy(z, binary_data=binary)
        request = kserve.InferRequest("mnist-vae.decoder", [tensor], request_id="k1")
        response = await client.infer(url, request, model_name="mnist-vae.decoder")
        wrong = kserve.InferInput("z", [1, 3], "FP32")
        wrong.set_data_from_numpy(np.zeros((1, 3), np.float32), binary_data=binary)
        with pytest.raises(httpx.HTTPStatusError, match=rf"expects \[-1, {LATENT_DIM}\]"):
            await client.infer(url, kserve.InferRequest("mnist-vae.decoder", [wrong]), model_name="mnist-vae.decoder")
        return response


@pytest.mark.parametrize("binary", [False, True])
def test_kserve_client_infers_what_decode_returns(url, binary):
    z = np.random.default_rng(5).standard_normal((3, LATENT_DIM)).astype(np.float32)
    response = asyncio.run(_infer(url, z, binary))
    assert response.id == "k1" and response.model_name == "mnist-vae.decoder"
    decoded = httpx.post(f"{url}/decode?model=mnist-vae&format=npy", json={"z": z.tolist()})
    expected = np.load(io.BytesIO(decoded.content))
    np.testing.assert_allclose(response.get_output_by_name("image").as_numpy(), expected, atol=1e-5)

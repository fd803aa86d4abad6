"""VAE_MAX_RESPONSE_BYTES on the image and latent routes: an answer that could be larger is refused (413) before
the model runs, whatever its format."""

import pytest

from service.settings import Settings

from ...asgi import serve
from ...payloads import b64, png
from .test_scale import PNG_ROUTES, call

pytestmark = pytest.mark.anyio
LIMIT = 4096


def runs(metrics: str) -> float:
    """Graph calls so far, over every model and graph."""
    rows = [row for row in metrics.splitlines() if row.startswith("vae_inference_seconds_count{")]
    return sum(float(row.rsplit(" ", 1)[1]) for row in rows)


@pytest.fixture(scope="module")
async def small(zoo):
    async with serve(Settings(models_dir=zoo, max_response_bytes=LIMIT)) as c:
        yield c


@pytest.mark.parametrize("route", PNG_ROUTES)
async def test_every_images_route_refuses_a_large_answer_before_the_model_runs(small, route):
    before = runs((await small.get("/metrics")).text)
    # scale=8 makes each 8x8 image 64x64: over 4 KiB as base64 PNGs in JSON, whatever the pixels.
    r = await call(small, route, format="json", scale=8)
    assert r.status_code == 413, r.text
    detail = r.json()["detail"]
    assert f"more than {LIMIT} (VAE_MAX_RESPONSE_BYTES)" in detail and "json image(s) of 64x64" in detail, detail
    assert runs((await small.get("/metrics")).text) == before
    assert (await call(small, route, format="png")).status_code == 200  # the same request, small, is answered


async def test_npy_answers_are_reckoned_at_four_bytes_a_number(small):
    z = {"z": [[0.0] * 4] * 15}  # 15 images of 8x8: 3,968 bytes of npy; 16 would be 4,224
    assert (await small.post("/decode", params={"model": "tiny-vae", "format": "npy"}, json=z)).status_code == 200
    r = await small.post("/decode", params={"model": "tiny-vae", "format": "npy"}, json={"z": [[0.0] * 4] * 16})
    assert r.status_code == 413 and "16 float32 arrays of 1x8x8" in r.json()["detail"], r.text


async def test_encode_reckons_its_latents_before_decoding_the_images(small):
    files = [("file", (f"{i}.png", png(seed=i), "image/png")) for i in range(4)]
    before = runs((await small.get("/metrics")).text)
    # 4 images x 4 dims x (mu, logvar and 64 draws) = 1,056 numbers: up to 25 KB of JSON.
    r = await small.post("/encode", params={"model": "tiny-vae", "samples": 64}, files=files)
    assert r.status_code == 413 and "4 images' latents as json" in r.json()["detail"], r.text
    assert runs((await small.get("/metrics")).text) == before
    r = await small.post("/encode", params={"model": "tiny-vae", "samples": 2}, json={"images": [b64(png())]})
    assert r.status_code == 200, r.text


async def test_the_openapi_document_gives_the_byte_limits_with_every_413(small):
    openapi = (await small.get("/openapi.json")).json()
    refusals = [
        op["responses"]["413"] for item in openapi["paths"].values() for op in item.values() if "413" in op["responses"]
    ]
    assert len(refusals) >= 10
    assert {(r["x-max-response-bytes"], r["x-max-body-bytes"]) for r in refusals} == {(LIMIT, 10 * 1024 * 1024)}

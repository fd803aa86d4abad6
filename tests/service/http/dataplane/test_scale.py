"""`scale=k` on every route that returns PNGs: k times larger (nearest neighbour), bounded, refused before rendering."""

import base64
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

import service.http.render
from service.settings import Settings

from ...asgi import serve
from ...payloads import b64, png

pytestmark = pytest.mark.anyio
D = 4  # the tiny models' latent_dim

# Every PNG-returning route, with a request that gives the same image every time (seeded or deterministic).
PNG_ROUTES: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "GET /sample": ("GET", "/sample", {"model": "tiny-vae", "n": 4, "seed": 1}, {}),
    "GET /generate": ("GET", "/generate", {"label": "1", "n": 2, "seed": 1}, {}),
    "POST /generate": ("POST", "/generate", {}, {"json": {"labels": [0, 2], "seed": 1}}),
    "POST /decode": ("POST", "/decode", {"model": "tiny-vae"}, {"json": {"z": [[0.0] * D, [1.0] * D]}}),
    "POST /reconstruct": ("POST", "/reconstruct", {"model": "tiny-vae"}, {"json": {"images": [b64(png(seed=1))]}}),
    "POST /interpolate": (
        "POST",
        "/interpolate",
        {"model": "tiny-vae", "steps": 3},
        {"json": {"z": [[0.0] * D, [1.0] * D]}},
    ),
    "POST /edit": (
        "POST",
        "/edit",
        {"model": "tiny-vae", "strengths": "0,1"},
        {"json": {"images": [b64(png(seed=1))], "vector": [1.0] * D}},
    ),
    "GET /traverse": ("GET", "/traverse", {"model": "tiny-vae", "dims": "0,1", "steps": 3}, {}),
    "POST /traverse": ("POST", "/traverse", {"model": "tiny-vae", "steps": 3}, {"json": {"images": [b64(png())]}}),
}


def pixels(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)))


async def call(client, route: str, **query):
    method, path, params, body = PNG_ROUTES[route]
    return await client.request(method, path, params={**params, **query}, **body)


@pytest.mark.parametrize("route", PNG_ROUTES)
async def test_scale_draws_every_png_k_times_larger_pixel_for_pixel(client, route):
    plain = await call(client, route, format="png")
    scaled = await call(client, route, format="png", scale=3)
    assert plain.status_code == 200 and scaled.status_code == 200, scaled.text
    assert scaled.headers["content-type"] == "image/png"
    small, large = pixels(plain.content), pixels(scaled.content)
    assert large.shape[:2] == (3 * small.shape[0], 3 * small.shape[1])
    assert np.array_equal(large, small.repeat(3, axis=0).repeat(3, axis=1))


async def test_json_carries_scaled_pngs_and_the_scale_and_the_array_shape(client):
    r = await call(client, "GET /sample", format="json", scale=2)
    body = r.json()
    assert body["scale"] == 2 and body["shape"] == [4, 1, 8, 8]
    sizes = {Image.open(io.BytesIO(base64.b64decode(im))).size for im in body["images"]}
    assert sizes == {(16, 16)}
    assert (await call(client, "GET /sample", format="json")).json()["scale"] == 1


async def test_scale_is_refused_with_npy_and_below_one(client):
    r = await call(client, "POST /decode", format="npy", scale=2)
    assert r.status_code == 422 and "format npy returns the model's array" in r.json()["detail"]
    r = await call(client, "POST /decode", scale=0)
    assert r.status_code == 422 and "scale" in r.json()["detail"]


async def test_scale_and_output_pixels_are_bounded_and_checked_before_any_png_is_made(zoo, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("a PNG was encoded for a refused request")

    async with serve(Settings(models_dir=zoo, max_scale=4, max_output_pixels=1000)) as c:
        r = await call(c, "POST /decode", scale=5)
        assert r.status_code == 422
        assert r.json()["detail"] == "parameter 'scale' is 5; the limit is 4 (VAE_MAX_SCALE)"
        one = await c.post("/decode", params={"model": "tiny-vae", "scale": 3}, json={"z": [[0.0] * D]})
        assert one.status_code == 200 and pixels(one.content).shape == (24, 24)  # 576 pixels
        monkeypatch.setattr(service.http.render, "encode_png", must_not_run)
        # Two 8x8 images: a 22x12 grid (one row, padding 2), 88x48 = 4224 pixels at scale 4; JSON: 2 x 32x32.
        for fmt, words in (("png", "1 PNG image(s) of 88x48, 4224 pixels"), ("json", "2 PNG image(s) of 32x32")):
            r = await call(c, "POST /decode", format=fmt, scale=4)
            assert r.status_code == 422, r.text
            detail = r.json()["detail"]
            assert words in detail and "the limit is 1000 (VAE_MAX_OUTPUT_PIXELS)" in detail, detail
        openapi = (await c.get("/openapi.json")).json()
        (scale,) = [p for p in openapi["paths"]["/decode"]["post"]["parameters"] if p["name"] == "scale"]
        assert scale["schema"]["maximum"] == 4 and scale["schema"]["minimum"] == 1


async def test_every_route_that_returns_a_made_png_documents_scale(client):
    openapi = (await client.get("/openapi.json")).json()
    made = {
        f"{method.upper()} {path}"
        for path, item in openapi["paths"].items()
        for method, op in item.items()
        if "image/png" in op.get("responses", {}).get("200", {}).get("content", {})
        and not path.startswith("/models/")  # report files are served as the training wrote them
    }
    assert made == set(PNG_ROUTES)
    for route in made:
        method, path = route.split()
        names = {p["name"] for p in openapi["paths"][path][method.lower()]["parameters"]}
        assert "scale" in names, route


@pytest.mark.parametrize("route", PNG_ROUTES)
async def test_every_answer_names_the_model_and_version_that_made_it(client, route):
    r = await call(client, route)
    model = r.headers["x-model"]
    version = (await client.get(f"/models/{model}")).json()["version"]
    assert r.status_code == 200 and r.headers["x-model-version"] == version, r.headers

"""GET /sample, GET /generate and POST /generate through httpx on the ASGI app."""

import base64
import time

import numpy as np
import pytest

from ...payloads import load_npy, load_png

pytestmark = pytest.mark.anyio


async def test_sample_default_is_a_png_grid_of_n(client):
    r = await client.get("/sample?n=16&seed=1")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert load_png(r.content).shape == (2 + 4 * 10, 2 + 4 * 10)  # 4 x 4 grid of 8 px images, 2 px padding
    assert r.headers["x-model"] == "tiny-vae" and r.headers["x-seed"] == "1"


async def test_sample_seed_reproduces_and_temperature_scales(client):
    a = load_npy((await client.get("/sample?n=8&seed=5&format=npy")).content)
    b = load_npy((await client.get("/sample?n=8&seed=5&format=npy")).content)
    cold = load_npy((await client.get("/sample?n=8&seed=5&temperature=0&format=npy")).content)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (8, 1, 8, 8)
    assert np.allclose(cold, cold[0]) and not np.allclose(a, a[0])  # temperature 0: every z is the prior mean


async def test_sample_json_via_accept(client):
    r = await client.get("/sample?n=2", headers={"accept": "application/json"})
    body = r.json()
    assert body["shape"] == [2, 1, 8, 8] and body["temperature"] == 1.0 and isinstance(body["seed"], int)
    assert base64.b64decode(body["images"][0]).startswith(b"\x89PNG")


async def test_sample_conditional_model_with_a_label(client):
    r = await client.get("/sample?model=tiny-cvae&n=3&label=one&format=json")
    assert r.json()["labels"] == ["one", "one", "one"]


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/sample?model=tiny-ae", 409, "no distribution to sample from"),
        ("/sample?label=1", 409, "unconditional"),
        ("/sample?model=tiny-cvae", 422, "conditional"),
        ("/sample?n=65", 422, "VAE_MAX_N"),
        ("/sample?n=0", 422, "'n'"),
        ("/sample?temperature=11", 422, "VAE_MAX_TEMPERATURE"),
        ("/sample?temperature=-1", 422, "'temperature'"),
        ("/sample?seed=-3", 422, "'seed'"),
        ("/sample?format=gif", 422, "'format'"),
        ("/sample?model=nope", 404, "nope"),
    ],
)
async def test_sample_errors(client, url, status, words):
    r = await client.get(url)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json" and words in r.json()["detail"]


async def test_generate_uses_the_conditional_default_and_labels_by_name_or_index(client):
    by_index = await client.get("/generate?label=2&n=3&seed=4&format=npy")
    by_name = await client.get("/generate?label=two&n=3&seed=4&format=npy")
    assert by_index.headers["x-model"] == "tiny-cvae"
    np.testing.assert_array_equal(load_npy(by_index.content), load_npy(by_name.content))


async def test_generate_several_labels_makes_one_row_per_label(client):
    r = await client.get("/generate?label=0&label=1&label=2&n=4&seed=0")
    assert load_png(r.content).shape == (2 + 3 * 10, 2 + 4 * 10)


async def test_generate_needs_a_label_and_a_conditional_model(client):
    missing = await client.get("/generate")
    unconditional = await client.get("/generate?model=tiny-vae&label=1")
    unknown = await client.get("/generate?label=seven")
    assert missing.status_code == 422 and "zero" in missing.json()["detail"]
    assert unconditional.status_code == 409 and "tiny-cvae" in unconditional.json()["detail"]
    assert unknown.status_code == 422


async def test_post_generate_one_image_per_label(client):
    r = await client.post("/generate?format=json", json={"labels": [0, "one", 2, "two"], "seed": 9})
    body = r.json()
    assert r.status_code == 200 and body["labels"] == ["zero", "one", "two", "two"] and body["seed"] == 9
    again = await client.post("/generate?format=json", json={"labels": [0, "one", 2, "two"], "seed": 9})
    assert again.json()["images"] == body["images"]


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"labels": []}}, 422),
        ({"json": {"labels": [True]}}, 422),
        ({"json": {"label": [1]}}, 422),
        ({"json": {"labels": [1], "temperature": -1}}, 422),
        ({"content": b"{", "headers": {"content-type": "application/json"}}, 422),
        ({"content": b"labels=1", "headers": {"content-type": "text/plain"}}, 415),
    ],
)
async def test_post_generate_bad_bodies(client, kwargs, status):
    assert (await client.post("/generate", **kwargs)).status_code == status


async def test_generate_checks_n_and_labels_before_building_anything(client):
    started = time.perf_counter()
    huge = await client.get("/generate?label=0&n=50000000")  # was a 50-million-entry list, 4.7 s on the loop
    assert time.perf_counter() - started < 1.0
    assert huge.status_code == 422 and "VAE_MAX_N" in huge.json()["detail"]
    product = await client.get("/generate?label=0,1&n=40")
    assert product.status_code == 422 and "n x labels is 80" in product.json()["detail"]
    many = await client.get("/generate?n=1&label=" + ",".join(["0"] * 10_000))
    assert many.status_code == 422 and "'label' holds 10000 labels" in many.json()["detail"]


@pytest.mark.parametrize("label", ["²", "①", "¹", "1" * 5_000])
@pytest.mark.parametrize("route", ["GET /sample?model=tiny-cvae&label=", "GET /generate?label=", "POST /generate"])
async def test_labels_that_isdigit_accepts_but_int_does_not_are_422(client, route, label):
    method, url = route.split(" ")
    if method == "GET":
        r = await client.get(url + label)
    else:
        r = await client.post(url, json={"labels": [label]})
    assert r.status_code == 422, r.text
    assert "is not a class of model 'tiny-cvae'" in r.json()["detail"]


async def test_post_generate_counts_the_labels_before_parsing_them(client):
    r = await client.post("/generate", json={"labels": [0] * 100})
    assert r.status_code == 413 and "at most 64 labels (VAE_MAX_N)" in r.json()["detail"]
    over = await client.post("/generate", json={"labels": [0] * 65})
    assert over.status_code == 422 and "VAE_MAX_N" in over.json()["detail"]


async def test_post_generate_takes_n_images_per_label_in_rows(client):
    r = await client.post("/generate?format=npy", json={"labels": [0, 1], "n": 3, "seed": 2})
    assert r.status_code == 200 and load_npy(r.content).shape == (6, 1, 8, 8)
    grid = await client.post("/generate", json={"labels": [0, 1], "n": 3, "seed": 2})
    assert load_png(grid.content).shape == (2 + 2 * 10, 2 + 3 * 10)  # one row per label, n columns
    same = await client.get("/generate?label=0,1&n=3&seed=2&format=npy")
    np.testing.assert_array_equal(load_npy(same.content), load_npy(r.content))  # GET and POST draw alike
    for n in (1, 3):  # and lay out alike, one row per label: with one image per label too
        got = await client.get(f"/generate?label=0,1,2&n={n}&seed=2")
        posted = await client.post("/generate", json={"labels": [0, 1, 2], "n": n, "seed": 2})
        assert got.content == posted.content and load_png(got.content).shape == (2 + 3 * 10, 2 + n * 10)
    over = await client.post("/generate", json={"labels": [0, 1], "n": 40})
    assert over.status_code == 422 and "n x labels is 80" in over.json()["detail"]

"""errors.py and the input paths: every bad request is a 4xx problem detail (RFC 9457), never a 500."""

import pickle

import numpy as np
import pytest

from ..payloads import b64, npy, png

pytestmark = pytest.mark.anyio

RAW_PNG = {"content-type": "image/png"}


def assert_problem(r, status: int, words: str = "") -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"] and body["instance"]
    assert words.lower() in body["detail"].lower(), body["detail"]


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status", "words"),
    [
        ("POST", "/encode", {"content": b"", "headers": RAW_PNG}, 422, "empty (0 bytes)"),
        ("POST", "/encode", {"content": b"GIF89a", "headers": RAW_PNG}, 415, "GIF"),
        ("POST", "/encode", {"content": png(), "headers": {"content-type": "text/plain"}}, 415, "multipart"),
        ("POST", "/encode", {"content": png()}, 415, "Content-Type"),
        ("POST", "/encode", {"content": png(size=200), "headers": RAW_PNG}, 413, "VAE_MAX_PIXELS"),
        (
            "POST",
            "/encode",
            {"files": [("f", (f"{i}.png", png(), "image/png")) for i in range(9)]},
            413,
            "VAE_MAX_IMAGES",
        ),
        ("POST", "/encode", {"json": {"images": [b64(png())] * 9}}, 413, "VAE_MAX_IMAGES"),
        ("POST", "/encode", {"json": {"images": ["%%%"]}}, 422, "images[0]"),
        ("POST", "/encode", {"json": {"images": []}}, 422, "images"),
        ("POST", "/encode", {"json": {"pictures": [b64(png())]}}, 422, "pictures"),
        ("POST", "/encode", {"json": ["not", "an", "object"]}, 422, "body"),
        ("POST", "/encode", {"files": {"x": ("a.png", png(), "image/png")}, "data": {"colour": "red"}}, 422, "colour"),
        ("POST", "/encode", {"files": {"label": (None, "1")}}, 422, "no image"),
        ("POST", "/encode", {"data": {"label": "1"}}, 415, "multipart"),
        ("POST", "/encode?samples=65", {"content": png(), "headers": RAW_PNG}, 422, "VAE_MAX_SAMPLES"),
        (
            "POST",
            "/encode?samples=9",
            {"files": [("f", (f"{i}.png", png(), "image/png")) for i in range(8)]},
            422,
            "VAE_MAX_LATENTS",
        ),
        ("POST", "/encode?format=png", {"content": png(), "headers": RAW_PNG}, 422, "format='png'"),
        ("POST", "/encode?model=tiny-cvae&label=9", {"content": png(), "headers": RAW_PNG}, 422, "not a class"),
        ("POST", "/encode", {"json": {"images": [b64(png())], "labels": [1]}}, 409, "unconditional"),
        ("POST", "/encode?model=tiny-cvae&label=1", {"json": {"images": [b64(png())], "labels": [1]}}, 422, "both"),
        ("POST", "/decode", {"json": {"z": [[0.0] * 4] * 65}}, 413, "VAE_MAX_LATENTS"),
        ("POST", "/decode", {"json": {"z": [[0.0] * 3]}}, 422, "latent_dim is 4"),
        ("POST", "/decode", {"json": {"z": []}}, 422, "z"),
        ("POST", "/decode", {"json": {"z": [["a", 0, 0, 0]]}}, 422, "z.0.0"),
        ("POST", "/decode", {"json": {"z": [0.0] * 16}}, 422, "every entry (16 of them)"),
        (
            "POST",
            "/decode",
            {"content": b'{"z": [[NaN, 0, 0, 0]]}', "headers": {"content-type": "application/json"}},
            422,
            "NaN",
        ),
        (
            "POST",
            "/decode",
            {"content": npy(np.zeros((2, 5), np.float32)), "headers": {"content-type": "application/x-npy"}},
            422,
            "[N, 4]",
        ),
        (
            "POST",
            "/decode",
            {"content": npy(np.array(["a", "b"])), "headers": {"content-type": "application/x-npy"}},
            422,
            "float or integer",
        ),
        (
            "POST",
            "/decode",
            {"content": pickle.dumps([1, 2]), "headers": {"content-type": "application/x-npy"}},
            422,
            ".npy",
        ),
        (
            "POST",
            "/decode",
            {"content": npy(np.array([{"a": 1}], dtype=object)), "headers": {"content-type": "application/x-npy"}},
            422,
            ".npy",
        ),
        ("POST", "/decode", {"content": b"z=1", "headers": {"content-type": "text/plain"}}, 415, "application/json"),
        ("POST", "/reconstruct?model=tiny-cvae", {"content": png(), "headers": RAW_PNG}, 422, "label"),
        ("POST", "/reconstruct?model=nope", {"content": png(), "headers": RAW_PNG}, 404, "loaded models"),
        ("GET", "/models/nope", {}, 404, "tiny-vae"),
        ("GET", "/nowhere", {}, 404, "no route"),
        ("PUT", "/sample", {}, 405, ""),
    ],
)
async def test_bad_requests_get_the_right_problem(client, method, url, kwargs, status, words):
    assert_problem(await client.request(method, url, **kwargs), status, words)


async def test_validation_errors_list_each_location(client):
    r = await client.get("/sample?n=abc&temperature=-2")
    assert_problem(r, 422, "parameter 'n'")
    assert r.json()["detail"].startswith("parameter 'n'")  # given in the query or a JSON body alike
    assert {tuple(e["loc"]) for e in r.json()["errors"]} == {("query", "n"), ("query", "temperature")}


async def test_random_garbage_never_causes_a_500(client):
    rng = np.random.default_rng(0)
    types = [
        "image/png",
        "image/jpeg",
        "application/json",
        "application/x-npy",
        "multipart/form-data",
        "multipart/form-data; boundary=xyz",
        "application/octet-stream",
        "",
    ]
    prefixes = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"\x93NUMPY", b'{"images": ["', b"--xyz\r\n"]
    for i in range(48):
        body = prefixes[i % len(prefixes)] + rng.integers(0, 256, int(rng.integers(0, 400)), dtype=np.uint8).tobytes()
        headers = {"content-type": types[i % len(types)]} if types[i % len(types)] else {}
        for url in ("/encode", "/decode", "/reconstruct?model=tiny-cvae&label=1", "/generate"):
            r = await client.post(url, content=body, headers=headers)
            assert 400 <= r.status_code < 500, (url, headers, body[:20], r.status_code, r.text)
    assert (await client.get("/ready")).status_code == 200


async def test_a_query_parameter_given_twice_is_refused_unless_it_repeats_by_design(client):
    r = await client.get("/sample?n=2&n=3")
    assert r.status_code == 422 and r.json()["detail"] == (
        "query parameter 'n' is given more than once on GET /sample; give it once"
    )
    assert (await client.get("/sample?model=tiny-cvae&label=1&label=2&n=2&format=npy")).status_code == 200

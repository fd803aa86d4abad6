"""edge.py: the body-size cap answers 413 whether or not the client declares Content-Length; a compressed body is
refused by name (415), not read as garbage; a client that hangs up mid-upload is counted as 499, not raised as a
500."""

import gzip
import logging

import pytest

from service.http.app import create_app

from ..payloads import png

pytestmark = pytest.mark.anyio

LIMIT = 200_000  # the `settings` fixture's max_body_bytes


async def test_declared_oversized_body_is_refused_before_it_is_read(client):
    r = await client.post("/encode", content=b"\0" * (LIMIT + 1), headers={"content-type": "image/png"})
    assert r.status_code == 413 and "VAE_MAX_BODY_BYTES" in r.json()["detail"]
    assert r.headers["content-type"] == "application/problem+json"


async def test_streamed_oversized_body_is_refused_while_it_streams(client):
    async def chunks():
        for _ in range(30):
            yield b"\0" * 10_000

    r = await client.post("/encode", content=chunks(), headers={"content-type": "image/png"})
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and "VAE_MAX_BODY_BYTES" in r.json()["detail"]


async def test_body_under_the_cap_passes(client):
    r = await client.post("/encode", content=png(), headers={"content-type": "image/png"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "content_type"),
    [
        ("POST", "/encode", "image/png"),
        ("POST", "/decode", "application/json"),
        ("POST", "/v2/models/tiny-vae/infer", "application/json"),
        ("POST", "/v2/repository/models/tiny-vae/load", "application/json"),
    ],
)
async def test_a_compressed_body_is_refused_by_name_on_both_planes(client, method, path, content_type):
    body = gzip.compress(png())
    headers = {"content-type": content_type, "content-encoding": "gzip"}
    r = await client.request(method, path, content=body, headers=headers)
    assert r.status_code == 415, r.text
    detail = r.json().get("detail") or r.json()["error"]  # /v2 answers in the Open Inference Protocol's shape
    assert "Content-Encoding: gzip" in detail and "without Content-Encoding" in detail
    assert r.headers["accept-encoding"] == "identity"  # RFC 7694


async def test_identity_content_encoding_is_no_coding_nor_is_one_on_a_request_without_a_body(client):
    headers = {"content-type": "image/png", "content-encoding": "identity"}
    assert (await client.post("/encode", content=png(), headers=headers)).status_code == 200
    assert (await client.get("/sample", headers={"content-encoding": "gzip"})).status_code == 200


async def test_service_keeps_serving_after_refusals(client):
    for _ in range(3):
        await client.post("/encode", content=b"\0" * (LIMIT + 1), headers={"content-type": "image/png"})
    assert (await client.get("/ready")).status_code == 200


async def test_a_client_gone_mid_upload_is_counted_499_not_raised(settings, caplog):
    app = create_app(settings)

    async def gone():
        return {"type": "http.disconnect"}

    async def send(message):
        raise AssertionError(f"nothing should be sent to a client that has gone: {message}")

    headers = [(b"content-type", b"image/png")]
    scope = {"type": "http", "method": "POST", "path": "/encode", "headers": headers, "query_string": b""}
    async with app.lifespan():
        with caplog.at_level(logging.INFO, logger="service.http.edge"):
            await app(scope, gone, send)  # the body read finds the client gone: ClientDisconnect
    labels = {"route": "/encode", "method": "POST", "status": "499"}
    assert app.metrics.registry.get_sample_value("vae_requests_total", labels) == 1
    assert [r.levelno for r in caplog.records] == [logging.INFO] and "disconnected" in caplog.text

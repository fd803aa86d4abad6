"""A hostile client against a real server on the shipped models (issue 9, defects 1 to 5).

Each case sends what once stalled the event loop, ballooned memory or gave a 500, and asserts the 4xx with a
problem-details message, that a concurrent /health kept answering within half a second, and that the server's
peak memory rose by less than 100 MiB. `pytest -s` prints what the watch measured.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from ..service.payloads import bad_exif_jpeg, npy_header, png, ztxt_bomb_png
from .hostile import MIB, Watch, watch
from .server import ROOT, running_process

MODELS = ROOT / "models"
pytestmark = pytest.mark.skipif(
    not (MODELS / "mnist-cvae" / "manifest.json").is_file(), reason="the shipped models (models/mnist-*) are missing"
)


@pytest.fixture(scope="module")
def server():
    with running_process(MODELS) as (process, url):
        yield process, url


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server[1], timeout=60) as client:
        yield client


def problem(response: httpx.Response, status: int, *words: str) -> str:
    """The problem-details `detail` of a response that must have this status and mention these words."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    detail = response.json()["detail"]
    for word in words:
        assert word in detail, detail
    return detail


def httpx_multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart body of PNG files, encoded now (as `json_body`), and its Content-Type."""
    request = httpx.Request("POST", "http://x", files=[("file", (name, data, "image/png")) for name, data in files])
    return request.read(), request.headers["content-type"]


def report(case: str, seen: Watch, seconds: float) -> None:
    print(
        f"\n{case}: answered in {seconds * 1000:.0f} ms; slowest /health {seen.slowest_health * 1000:.0f} ms "
        f"over {seen.health_calls} calls; peak memory growth {seen.peak_growth / MIB:.1f} MiB"
    )


def json_body(value: object) -> dict:
    """Keyword arguments for httpx with the JSON encoded now, so the client's own work stays out of the watch."""
    return {"content": json.dumps(value).encode(), "headers": {"content-type": "application/json"}}


def test_counts_are_checked_before_anything_is_allocated(server, http):
    process, url = server
    labels = json_body({"labels": [0] * 1_000_000})  # 3 MB
    latents = json_body({"z": [[0] * 32] * 50_000})  # 3.2 MB
    images = json_body({"images": [""] * 1_000_000})  # 4 MB
    with watch(process, url) as seen:
        started = time.perf_counter()
        responses = [
            http.get("/generate?label=0&n=50000000"),  # was 4.7 s on the loop and +390 MB
            http.get("/generate?label=0&n=" + "9" * 5_000),
            http.get("/generate?n=1&label=" + ",".join(["0"] * 2_000)),
            http.post("/generate", **labels),
            http.post("/decode", **latents),
            http.post("/encode", **images),
        ]
        seconds = time.perf_counter() - started
    report("counts", seen, seconds)
    problem(responses[0], 422, "query parameter 'n'", "VAE_MAX_N")
    problem(responses[1], 422, "'n'")
    problem(responses[2], 422, "query parameter 'label' holds 2000 labels", "VAE_MAX_N")
    problem(responses[3], 413, "VAE_MAX_N")
    problem(responses[4], 413, "VAE_MAX_LATENTS")
    problem(responses[5], 413, "VAE_MAX_IMAGES")
    seen.assert_healthy()


@pytest.mark.parametrize("images", [16, 64])
def test_png_text_chunks_are_not_expanded(server, http, images):
    # 16 PNGs of 28x28, each with 60 zTXt chunks of 1 MiB of text (1 MB on the wire) once stalled the loop 3.5 s
    # and took +900 MB; 64 of them (4 MB) 11.4 s, 3 GB, then a 500. The text is now dropped unread.
    process, url = server
    body, content_type = httpx_multipart([(f"{i}.png", ztxt_bomb_png()) for i in range(images)])
    with watch(process, url) as seen:
        started = time.perf_counter()
        response = http.post("/encode", content=body, headers={"content-type": content_type})
        seconds = time.perf_counter() - started
    report(f"{images} zTXt-bomb PNGs", seen, seconds)
    assert response.status_code == 200, response.text[:500]
    assert len(response.json()["mu"]) == images
    seen.assert_healthy()


@pytest.mark.parametrize("label", ["²", "①", "¹", "1" * 5_000])
def test_labels_that_isdigit_accepts_but_int_does_not_are_422(server, http, label):
    process, url = server
    image = {"file": ("a.png", png(size=28), "image/png")}
    with watch(process, url) as seen:
        started = time.perf_counter()
        responses = [
            http.get("/generate", params={"label": label}),
            http.get("/sample", params={"model": "mnist-cvae", "label": label}),
            http.post("/generate", json={"labels": [label]}),
            http.post("/decode", params={"model": "mnist-cvae", "label": label}, json={"z": [[0.0] * 32]}),
            http.post("/encode", params={"model": "mnist-cvae", "label": label}, files=image),
            http.post("/reconstruct", params={"model": "mnist-cvae"}, files=image, data={"label": label}),
        ]
        seconds = time.perf_counter() - started
    report(f"label {label[:8]!r}", seen, seconds)
    for response in responses:
        problem(response, 422, "is not a class of model 'mnist-cvae'", "give an index 0..9")
    seen.assert_healthy()


def test_npy_headers_are_checked_before_allocating(server, http):
    process, url = server
    npy = {"content-type": "application/x-npy"}
    listing = http.get("/models").json()
    d = next(m["latent_dim"] for m in listing["models"] if m["name"] == listing["default"])  # /decode's model
    with watch(process, url) as seen:
        started = time.perf_counter()
        bodies = [
            npy_header(f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}")
            for shape in (f"(1000000000000, {d})", f"(1000000000, {d})", f"(4, {d})")
        ]
        bodies.append(npy_header("{'descr': '<f4', 'shape': ("))
        bodies.append(npy_header(f"{{'descr': '|O', 'fortran_order': False, 'shape': (1, {d}), }}") + b"\0" * 8)
        responses = [http.post("/decode", headers=npy, content=body) for body in bodies]
        seconds = time.perf_counter() - started
    report(".npy headers", seen, seconds)
    problem(responses[0], 413, "1000000000000 latent vectors", "VAE_MAX_LATENTS")
    problem(responses[1], 413, "1000000000 latent vectors", "VAE_MAX_LATENTS")
    problem(responses[2], 422, f"{4 * d * 4} bytes of data", "0 bytes follow")
    problem(responses[3], 422, "not a readable .npy array")
    problem(responses[4], 422, "dtype 'object'")
    seen.assert_healthy()


def test_malformed_exif_is_422_naming_the_part(server, http):
    process, url = server
    jpeg = bad_exif_jpeg(size=28)
    with watch(process, url) as seen:
        started = time.perf_counter()
        raw = http.post("/encode", content=jpeg, headers={"content-type": "image/jpeg"})
        form = http.post("/reconstruct", files=[("file", ("phone.jpg", jpeg, "image/jpeg"))])
        seconds = time.perf_counter() - started
    report(f"malformed EXIF ({len(jpeg)}-byte JPEG)", seen, seconds)
    problem(raw, 422, "the request body could not be decoded", "send an intact PNG or JPEG")
    problem(form, 422, "file 'phone.jpg' could not be decoded")
    seen.assert_healthy()

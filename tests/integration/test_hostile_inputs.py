"""A hostile client against a real server on the shipped models: bodies that cost work or memory out of proportion.

Each case sends what once stalled the event loop, ballooned memory or gave a 500, and asserts the 4xx with a
problem-details message, that a concurrent /health kept answering within half a second, that the server's peak
memory rose by less than 100 MiB, and that its resident memory went back. `pytest -s` prints what the watch
measured. Attacks on the connection itself (framing, slow clients) are in test_connections.py.
"""

from __future__ import annotations

import io
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image

from ..service.payloads import bad_exif_jpeg, npy, npy_header, png, ztxt_bomb_png
from .hostile import MIB, Watch, watch
from .server import ROOT, running_process

MODELS = ROOT / "models"
pytestmark = pytest.mark.skipif(
    not (MODELS / "mnist-cvae" / "manifest.json").is_file(), reason="the shipped models (models/mnist-*) are missing"
)


@pytest.fixture(scope="module")
def server():
    with running_process(MODELS, {"VAE_PROCESSES": "1"}) as (process, url):  # one event loop: the one watched
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
    assert problem(responses[0], 422, "VAE_MAX_N").startswith("parameter 'n'")
    problem(responses[1], 422, "'n'")
    assert problem(responses[2], 422, "VAE_MAX_N").startswith("parameter 'label' holds 2000 labels")
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


def test_json_outputs_are_reckoned_before_the_model_runs(server, http):
    # 64 KiB of binary latents asking for the images as JSON numbers: 19 MB of answer each, six at once (+265 MB
    # and the loop held 0.8 s when the answer was made before it was measured).
    process, url = server
    z = np.zeros((1024, 16), np.float32)
    header = json.dumps(
        {
            "inputs": [
                {"name": "z", "shape": list(z.shape), "datatype": "FP32"}
                | {"parameters": {"binary_data_size": z.nbytes}}
            ],
            "outputs": [{"name": "image", "parameters": {"binary_data": False}}],
        }
    ).encode()
    headers = {"Inference-Header-Content-Length": str(len(header)), "content-type": "application/octet-stream"}
    body = header + z.tobytes()

    def post(_: int) -> httpx.Response:
        return http.post("/v2/models/mnist-vae.decoder/infer", content=body, headers=headers)

    with watch(process, url) as seen, ThreadPoolExecutor(6) as pool:
        started = time.perf_counter()
        responses = list(pool.map(post, range(6)))
        seconds = time.perf_counter() - started
    report("six OIP requests for JSON images", seen, seconds)
    for response in responses:
        assert response.status_code == 413 and "VAE_MAX_RESPONSE_BYTES" in response.json()["error"], response.text
    seen.assert_healthy()


def test_base64_made_of_millions_of_pieces_costs_its_size_only(server, http):
    # 10 MB of "QUFB " (two million pieces): once +243 MB and a 0.2 s stall before the refusal.
    process, url = server
    body = json_body({"images": ["QUFB " * 2_000_000]})
    with watch(process, url) as seen:
        started = time.perf_counter()
        response = http.post("/encode", **body)
        seconds = time.perf_counter() - started
    report("10 MB of whitespace-separated base64", seen, seconds)
    problem(response, 415, "body field 'images[0]' is bytes starting b'AAAAAAAA'", "send a PNG or JPEG")
    seen.assert_healthy()


def progressive_jpeg_bomb(size: int, copies: int) -> bytes:
    """A real progressive JPEG whose last scan is repeated `copies` times: each scan is another pass over the image."""
    pixels = np.random.default_rng(4).integers(0, 256, (size, size), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", progressive=True, quality=90)
    data = buffer.getvalue()
    last = data.rindex(b"\xff\xda")
    return data[:last] + data[last:-2] * copies + b"\xff\xd9"


@pytest.mark.parametrize(("size", "copies"), [(28, 300), (256, 100)])
def test_a_progressive_jpeg_of_repeated_scans_is_refused_before_decoding(server, http, size, copies):
    # 44 KB of repeated scans once took 4.4 s of CPU for one request, 156 KB 28 s, and went on after the client left.
    process, url = server
    bomb = progressive_jpeg_bomb(size, copies)
    with watch(process, url) as seen:
        started = time.perf_counter()
        response = http.post("/encode", content=bomb, headers={"content-type": "image/jpeg"})
        seconds = time.perf_counter() - started
    report(f"progressive JPEG of {copies} repeated scans ({len(bomb) // 1024} KiB)", seen, seconds)
    problem(response, 422, "scans; at most 64")
    assert seconds < 0.5
    seen.assert_healthy()


def test_multipart_parts_and_their_headers_are_bounded(server, http):
    process, url = server
    b = b"--XyZ\r\n"
    end = b"--XyZ--\r\n"
    file_head = b'Content-Disposition: form-data; name="file"; filename="a.png"\r\n'
    bodies = {
        "100,000 empty fields": b'--XyZ\r\nContent-Disposition: form-data; name="label"\r\n\r\n\r\n' * 100_000 + end,
        "a part header of 9 MB": b + file_head + b"X-Long: " + b"a" * 9_000_000 + b"\r\n\r\nxx\r\n" + end,
        "a million part header lines": b + file_head + b"X: y\r\n" * 1_000_000 + b"\r\nxx\r\n" + end,
        "a label field of 9 MB": b
        + b'Content-Disposition: form-data; name="label"\r\n\r\n'
        + b"0" * 9_000_000
        + b"\r\n"
        + end,
    }
    headers = {"content-type": "multipart/form-data; boundary=XyZ"}
    with watch(process, url) as seen:
        started = time.perf_counter()
        responses = {name: http.post("/encode", content=body, headers=headers) for name, body in bodies.items()}
        seconds = time.perf_counter() - started
    report("multipart: many parts, long part headers, a long field", seen, seconds)
    problem(responses["100,000 empty fields"], 422, "Too many fields")
    for name in list(bodies)[1:]:
        problem(responses[name], 422, "the multipart body could not be parsed")
    seen.assert_healthy()


def test_latents_that_overflow_the_decoder_are_refused_not_answered_with_nan(http):
    z = np.full((1, 16), 3e38, np.float32) * np.array([1, -1] * 8, np.float32)
    r = http.post(
        "/decode",
        params={"model": "mnist-vae", "format": "npy"},
        content=npy(z),
        headers={"content-type": "application/x-npy"},
    )
    problem(r, 422, "not finite", "N(0, I)")
    tensor = {"name": "z", "shape": [1, 16], "datatype": "FP32", "data": z.ravel().tolist()}
    r = http.post("/v2/models/mnist-vae.decoder/infer", json={"inputs": [tensor]})
    assert r.status_code == 400 and "not finite" in r.json()["error"]
    ends = [[3e38] * 16, [-3e38] * 16]
    r = http.post(
        "/interpolate", params={"model": "mnist-vae", "path": "spherical", "format": "json"}, json={"z": ends}
    )
    problem(r, 422, "float32")

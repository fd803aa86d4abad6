"""The shipped models in models/, served by a real uvicorn process, used over HTTP as a client would.

Skipped (with the reason) only while models/ holds no model folder yet.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from vaeformat.errors import ManifestError
from vaeformat.manifest import load_manifest

from .server import ROOT, running_server

# The shipped models; VAE_TEST_MODELS_DIR points these tests at another model repository (e.g. in a container).
MODELS = Path(os.environ.get("VAE_TEST_MODELS_DIR") or ROOT / "models")


def _manifests() -> dict:
    found = {}
    for folder in sorted(MODELS.glob("*/")) if MODELS.is_dir() else []:
        try:
            found[folder.name] = load_manifest(folder)
        except ManifestError:
            continue
    # The digit models first: the tests that take "the first cvae" send digits and ask for label 3.
    return dict(sorted(found.items(), key=lambda item: (item[1].training.dataset != "mnist", item[0])))


MANIFESTS = _manifests()
pytestmark = pytest.mark.skipif(
    not MANIFESTS, reason=f"no model in {MODELS} yet: `make models` trains and exports the shipped models"
)


def first(predicate) -> str:
    name = next((m.name for m in MANIFESTS.values() if predicate(m)), None)
    if name is None:
        pytest.skip("models/ has no model of the kind this test needs")
    return name


BODY_CAP = 200_000


@pytest.fixture(scope="module")
def url():
    with running_server(MODELS, env={"VAE_MAX_BODY_BYTES": str(BODY_CAP)}) as base:
        yield base


@pytest.fixture(scope="module")
def http(url):
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_b64_png(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))), dtype=np.float32) / 255.0


def digits(mnist, label: int, count: int) -> list[np.ndarray]:
    images, labels = mnist
    return list(images[labels == label][:count])


def test_models_lists_every_shipped_model_with_its_provider(http):
    body = http.get("/models").json()
    assert {m["name"] for m in body["models"]} == {m.name for m in MANIFESTS.values()}, body["refused"]
    for model in body["models"]:
        assert model["providers"]["encoder"] and model["providers"]["decoder"]
    health = http.get("/health").json()
    assert health["status"] == "ok" and health["ready"] and isinstance(health["gpu"], bool)


def test_encode_a_real_digit(http, mnist):
    name = first(lambda m: m.stochastic and not m.conditional)
    latent_dim = MANIFESTS[name].latent_dim
    seven = digits(mnist, 7, 1)[0]
    r = http.post(f"/encode?model={name}&samples=4&seed=0", files={"file": ("seven.png", png(seven), "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert np.array(body["mu"]).shape == (1, latent_dim) and np.array(body["z"]).shape == (1, 4, latent_dim)
    assert np.isfinite(body["logvar"]).all()


def test_sample_16(http):
    name = first(lambda m: m.stochastic and not m.conditional)
    grid = http.get(f"/sample?model={name}&n=16&seed=3")
    again = http.get(f"/sample?model={name}&n=16&seed=3")
    assert grid.status_code == 200 and grid.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(grid.content)).size == (2 + 4 * 30, 2 + 4 * 30)  # 4 x 4 digits of 28 px
    assert grid.content == again.content
    array = np.load(io.BytesIO(http.get(f"/sample?model={name}&n=16&seed=3&format=npy").content))
    assert array.shape == (16, 1, 28, 28) and 0 <= array.min() and array.max() <= 1
    assert array.reshape(16, -1).std(axis=0).mean() > 0.02  # sixteen different images, not one


@pytest.mark.parametrize("kind", ["ae", "vae"])
def test_reconstruction_of_real_digits_is_close(http, mnist, kind):
    name = first(lambda m: m.kind == kind)
    images = np.stack([digits(mnist, d, 1)[0] for d in range(10)])
    files = [("file", (f"{i}.png", png(x), "image/png")) for i, x in enumerate(images)]
    body = http.post(f"/reconstruct?model={name}", files=files).json()
    x = images.astype(np.float32) / 255.0
    recon = np.stack([decode_b64_png(s) for s in body["images"]])
    errors = np.array(body["reconstruction_error"])
    assert recon.shape == x.shape and errors.shape == (10,)
    # The reported error is the sum of squared pixel errors (up to the 8-bit rounding of the returned PNGs).
    np.testing.assert_allclose(errors, ((recon - x) ** 2).sum(axis=(1, 2)), rtol=0.05, atol=0.5)
    # Close: far better than an all-black guess, and each reconstruction is nearest to its own input.
    assert (errors < 0.5 * (x**2).sum(axis=(1, 2))).all(), errors
    distances = ((recon[:, None] - x[None]) ** 2).sum(axis=(2, 3))  # [reconstruction, input]
    assert (distances.argmin(axis=1) == np.arange(10)).sum() >= 9


def test_generate_a_label(http, mnist):
    name = first(lambda m: m.conditional)
    images, labels = mnist
    centroids = np.stack([images[labels == d].reshape(-1, 784).mean(axis=0) / 255.0 for d in range(10)])
    r = http.get(f"/generate?model={name}&label=7&n=16&seed=0&format=npy")
    assert r.status_code == 200, r.text
    generated = np.load(io.BytesIO(r.content)).reshape(16, 784)
    nearest = ((generated[:, None] - centroids[None]) ** 2).sum(axis=2).argmin(axis=1)
    assert (nearest == 7).sum() >= 8, nearest  # most of them look like a 7 to a nearest-centroid classifier
    by_name = http.get(f"/generate?model={name}&label={MANIFESTS[name].labels[7]}&n=16&seed=0&format=npy")
    assert by_name.content == r.content
    posted = http.post(f"/generate?model={name}&format=json", json={"labels": [1, 7], "seed": 0}).json()
    assert posted["labels"] == [MANIFESTS[name].labels[1], MANIFESTS[name].labels[7]]


def _bomb_png(side: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 99)) + chunk(b"IEND", b"")
    )


def bad_requests() -> list:
    digit = png(np.zeros((28, 28), np.uint8))
    raw = {"content-type": "image/png"}
    vae = next((m.name for m in MANIFESTS.values() if m.stochastic and not m.conditional), None)
    cases = [
        ("unknown model", "GET", "/sample?model=no-such-model", {}, 404),
        ("unknown route", "GET", "/no-such-route", {}, 404),
        ("n below 1", "GET", "/sample?n=0", {}, 422),
        ("n above the cap", "GET", "/sample?n=100000", {}, 422),
        ("negative temperature", "GET", "/sample?temperature=-1", {}, 422),
        ("unknown format", "GET", "/sample?format=gif", {}, 422),
        ("GIF upload", "POST", "/encode", {"content": b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "headers": raw}, 415),
        ("text body", "POST", "/encode", {"content": b"hello", "headers": {"content-type": "text/plain"}}, 415),
        ("corrupt PNG", "POST", "/encode", {"content": digit[:40], "headers": raw}, 422),
        ("decompression bomb", "POST", "/encode", {"content": _bomb_png(60_000), "headers": raw}, 413),
        ("body over the cap", "POST", "/encode", {"content": b"\0" * (BODY_CAP + 1), "headers": raw}, 413),
        (
            "too many images",
            "POST",
            "/encode",
            {"files": [("f", (f"{i}.png", digit, "image/png")) for i in range(65)]},
            413,
        ),
        ("bad base64", "POST", "/encode", {"json": {"images": ["***"]}}, 422),
        ("wrong latent size", "POST", "/decode", {"json": {"z": [[0.0, 1.0]]}}, 422),
        ("non-numeric latent", "POST", "/decode", {"json": {"z": "zeros"}}, 422),
        ("wrong method", "DELETE", "/sample", {}, 405),
    ]
    if any(m.kind == "ae" for m in MANIFESTS.values()):
        ae = next(m.name for m in MANIFESTS.values() if m.kind == "ae")
        cases += [
            ("the standard prior of an ae", "GET", f"/sample?model={ae}&prior=standard", {}, 409),
            ("z draws from an ae", "POST", f"/encode?model={ae}&samples=2", {"content": digit, "headers": raw}, 409),
        ]
    if vae:
        cases += [
            ("label for an unconditional model", "GET", f"/sample?model={vae}&label=3", {}, 409),
            ("generate with an unconditional model", "GET", f"/generate?model={vae}&label=3", {}, 409),
        ]
    if any(m.conditional for m in MANIFESTS.values()):
        cvae = next(m.name for m in MANIFESTS.values() if m.conditional)
        cases += [
            ("conditional without a label", "GET", f"/sample?model={cvae}", {}, 422),
            ("generate without a label", "GET", f"/generate?model={cvae}", {}, 422),
            ("label not a class", "GET", f"/generate?model={cvae}&label=eleven", {}, 422),
            (
                "reconstruct without a label",
                "POST",
                f"/reconstruct?model={cvae}",
                {"content": digit, "headers": raw},
                422,
            ),
        ]
    return [pytest.param(*case, id=case[0]) for case in cases]


@pytest.mark.parametrize(("what", "method", "path", "kwargs", "status"), bad_requests())
def test_bad_requests_get_the_right_4xx(http, what, method, path, kwargs, status):
    r = http.request(method, path, **kwargs)
    assert r.status_code == status, f"{what}: {r.status_code} {r.text}"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == status and r.json()["detail"]


def test_the_service_survived_every_bad_request(http):
    assert http.get("/ready").status_code == 200
    assert 'status="500"' not in http.get("/metrics").text

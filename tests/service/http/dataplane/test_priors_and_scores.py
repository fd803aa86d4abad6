"""GET /sample, /generate with prior=fitted|standard, and POST /score, in-process on tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from service.settings import Settings

from ....prior_models import add_prior
from ....tiny_models import build_model
from ...asgi import serve
from ...payloads import b64, load_npy, png

pytestmark = pytest.mark.anyio
QUANTILES = {"nll": list(np.linspace(20.0, 60.0, 101)), "squared_error": list(np.linspace(1.0, 9.0, 101))}


@pytest.fixture(scope="module")
def priors_zoo(tmp_path_factory) -> Path:
    """tiny-ae and tiny-vae with a fitted prior, a cvae with one per class, and models without one."""
    root = tmp_path_factory.mktemp("priors")
    build_model(root / "ae-fitted", name="ae-fitted", kind="ae", seed=1)
    add_prior(root / "ae-fitted", quantiles=QUANTILES)
    build_model(root / "ae-plain", name="ae-plain", kind="ae", seed=1)
    build_model(root / "vae-fitted", name="vae-fitted", kind="vae", seed=2)
    add_prior(root / "vae-fitted", quantiles=QUANTILES)
    build_model(root / "vae-plain", name="vae-plain", kind="vae", seed=2, iw_bound=200.0)
    build_model(root / "cvae-fitted", name="cvae-fitted", kind="cvae", labels=["a", "b"], seed=3)
    add_prior(root / "cvae-fitted")
    build_model(root / "vae-1d", name="vae-1d", kind="vae", latent_dim=1, seed=4, iw_bound=300.0)
    return root


@pytest.fixture(scope="module")
async def client(priors_zoo):
    settings = Settings(models_dir=priors_zoo, max_images=8, max_n=64, max_score_samples=4000, max_score_rows=8000)
    async with serve(settings) as c:
        yield c


async def test_an_ae_with_a_fitted_prior_samples_from_it_by_default(client):
    r = await client.get("/sample", params={"model": "ae-fitted", "n": 3, "seed": 5, "format": "json"})
    assert r.status_code == 200, r.text
    assert r.headers["x-prior"] == "fitted" and r.json()["prior"] == "fitted"
    again = await client.get("/sample", params={"model": "ae-fitted", "n": 3, "seed": 5, "format": "npy"})
    other = await client.get("/sample", params={"model": "ae-fitted", "n": 3, "seed": 6, "format": "npy"})
    first = await client.get("/sample", params={"model": "ae-fitted", "n": 3, "seed": 5, "format": "npy"})
    assert np.array_equal(load_npy(again.content), load_npy(first.content))
    assert not np.array_equal(load_npy(again.content), load_npy(other.content))  # noise seeded from `seed`
    standard = await client.get("/sample", params={"model": "ae-fitted", "prior": "standard"})
    assert standard.status_code == 409
    assert "no standard prior" in standard.json()["detail"] and "prior=fitted" in standard.json()["detail"]


async def test_an_ae_without_a_prior_is_409_saying_how_to_fit_one(client):
    r = await client.get("/sample", params={"model": "ae-plain"})
    assert r.status_code == 409
    assert "python -m training fit-prior models/ae-plain" in r.json()["detail"]
    details = (await client.get("/models/ae-plain")).json()
    assert details["capabilities"]["sample"] is False and details["default_prior"] is None


async def test_a_vae_defaults_to_its_fitted_prior_and_standard_is_still_there(client):
    params = {"model": "vae-fitted", "n": 4, "seed": 1, "format": "npy"}
    fitted = await client.get("/sample", params=params)
    standard = await client.get("/sample", params={**params, "prior": "standard"})
    assert fitted.headers["x-prior"] == "fitted" and standard.headers["x-prior"] == "standard"
    assert not np.array_equal(load_npy(fitted.content), load_npy(standard.content))
    plain = await client.get("/sample", params={"model": "vae-plain", "format": "json", "n": 1})
    assert plain.headers["x-prior"] == "standard" and plain.json()["prior"] == "standard"
    missing = await client.get("/sample", params={"model": "vae-plain", "prior": "fitted"})
    assert missing.status_code == 409 and "has no fitted prior" in missing.json()["detail"]
    bad = await client.get("/sample", params={"model": "vae-fitted", "prior": "gmm"})
    assert bad.status_code == 422
    details = (await client.get("/models/vae-fitted")).json()
    assert details["priors"] == ["fitted", "standard"] and details["default_prior"] == "fitted"
    assert details["prior"]["components"] == [2]


async def test_temperature_zero_decodes_the_component_means(client):
    params = {"model": "ae-fitted", "n": 64, "seed": 3, "temperature": 0.0, "format": "npy"}
    images = load_npy((await client.get("/sample", params=params)).content)
    assert len(np.unique(images.reshape(64, -1), axis=0)) == 2  # two components, no spread around them


async def test_generate_takes_prior_and_draws_from_each_class(client):
    get = await client.get("/generate", params={"model": "cvae-fitted", "label": "b", "n": 2, "format": "json"})
    assert get.status_code == 200, get.text
    assert get.headers["x-prior"] == "fitted" and get.json()["labels"] == ["b", "b"]
    post = await client.post(
        "/generate", params={"model": "cvae-fitted", "prior": "standard", "format": "json"}, json={"labels": ["a"]}
    )
    assert post.status_code == 200 and post.json()["prior"] == "standard"


async def test_openapi_lists_the_prior_parameter_and_score(client):
    spec = (await client.get("/openapi.json")).json()
    for path, method in (("/sample", "get"), ("/generate", "get"), ("/generate", "post")):
        assert "prior" in {p["name"] for p in spec["paths"][path][method]["parameters"]}
    assert {"samples", "seed", "label"} <= {p["name"] for p in spec["paths"]["/score"]["post"]["parameters"]}


def digit(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((8, 8)) < 0.3).astype(np.uint8) * 255  # black and white


async def test_score_of_a_vae_reproduces_the_exact_log_likelihood_of_a_one_dimensional_model(client, priors_zoo):
    image = digit()
    r = await client.post(
        "/score", params={"model": "vae-1d", "samples": 4000, "seed": 0}, json={"images": [b64(png(image))]}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["samples"] == 4000 and body["seed"] == 0 and len(body["scores"]) == 1
    s = body["scores"][0]
    # Brute force: log p(x) = log integral p(x|z) N(z; 0, 1) dz on a fine grid, the decoder run by onnxruntime.
    grid = np.linspace(-12, 12, 24001, dtype=np.float32)[:, None]
    decoder = ort.InferenceSession(str(priors_zoo / "vae-1d" / "decoder.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = decoder.run(["logits"], {"z": grid})
    x = (image / 255.0).reshape(1, 1, 8, 8)
    log_joint = -(np.logaddexp(0, -logits) * x + np.logaddexp(0, logits) * (1 - x)).reshape(len(grid), -1).sum(1)
    log_joint = log_joint - 0.5 * (np.log(2 * np.pi) + grid[:, 0].astype(np.float64) ** 2)
    top = log_joint.max()
    exact = -(top + np.log(np.exp(log_joint - top).sum() * (grid[1, 0] - grid[0, 0])))
    print("nll", s["nll"], "exact", exact, "elbo", s["elbo"])
    assert s["nll"] == pytest.approx(exact, abs=0.05)
    assert -s["elbo"] >= s["nll"] and -s["elbo"] == pytest.approx(s["reconstruction"] + s["kl"], rel=0.2)
    assert s["percentile"] is None and s["anomalous"] is None  # no held-out quantiles in this manifest


async def test_score_is_seeded_one_entry_per_image_and_ranks_against_held_out_quantiles(client):
    images = {"images": [b64(png(digit(i))) for i in range(3)]}
    a = await client.post("/score", params={"model": "vae-fitted", "seed": 9}, json=images)
    b = await client.post("/score", params={"model": "vae-fitted", "seed": 9}, json=images)
    assert a.status_code == 200, a.text
    assert a.json() == b.json() and a.headers["x-seed"] == "9" and a.json()["samples"] == 64
    for s in a.json()["scores"]:
        assert set(s) == {
            *("nll", "elbo", "reconstruction", "kl", "ess", "squared_error", "complexity", "percentile", "anomalous")
        }  # no out-of-distribution test in this manifest: anomalous is decided on the percentile
        assert 1.0 <= s["ess"] <= 64
        expected = float(np.clip((s["nll"] - 20.0) / 40.0 * 100, 0, 100))
        assert s["percentile"] == pytest.approx(expected, abs=1e-6) and s["anomalous"] == (expected > 99)


async def test_score_of_an_ae_is_its_squared_error_and_its_percentile(client):
    grey = png(seed=1)  # a grey image: an ae scores it as it is
    r = await client.post("/score", params={"model": "ae-fitted"}, content=grey, headers={"content-type": "image/png"})
    rec = await client.post(
        "/reconstruct", params={"model": "ae-fitted"}, content=grey, headers={"content-type": "image/png"}
    )
    body = r.json()
    assert body["samples"] == 0
    assert set(body["scores"][0]) == {"squared_error", "complexity", "percentile", "anomalous"}
    assert body["scores"][0]["squared_error"] == pytest.approx(rec.json()["reconstruction_error"][0], rel=1e-5)


async def test_score_limits_are_checked_before_any_work_and_a_cvae_takes_a_label_or_none(client):
    one = {"images": [b64(png(digit()))]}
    too_many = await client.post("/score", params={"model": "vae-fitted", "samples": 4001}, json=one)
    assert too_many.status_code == 422 and "VAE_MAX_SCORE_SAMPLES" in too_many.json()["detail"]
    rows = await client.post(
        "/score", params={"model": "vae-fitted", "samples": 3000}, json={"images": one["images"] * 3}
    )
    assert rows.status_code == 422 and "VAE_MAX_SCORE_ROWS" in rows.json()["detail"]
    labelled = await client.post("/score", params={"model": "cvae-fitted", "label": "b"}, json=one)
    assert labelled.status_code == 200 and labelled.json()["scores"][0]["percentile"] is None
    # Without a label a cvae is scored over all its labels, and its label probabilities come back.
    unlabelled = await client.post("/score", params={"model": "cvae-fitted", "seed": 3}, json=one)
    assert unlabelled.status_code == 200, unlabelled.text
    free, given = unlabelled.json()["scores"][0], labelled.json()["scores"][0]
    probs = free["label_probabilities"]
    assert list(probs) == ["a", "b"] and sum(probs.values()) == pytest.approx(1.0)
    assert list(given["label_probabilities"]) == ["a", "b"]
    # The rows limit counts every label's draws: 2 labels x 3000 samples x 3 images > 16384 > 3 x 3000.
    three = {"images": one["images"] * 3}
    rows = await client.post("/score", params={"model": "cvae-fitted", "samples": 3000}, json=three)
    assert rows.status_code == 422 and "labels" in rows.json()["detail"]

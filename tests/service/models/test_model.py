"""model.py: labels by index or name, capabilities read from the graphs, seeded noise, reconstruction error."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.engine.providers import GPU_PROVIDERS
from service.errors import InvalidInput, LabelRequired, NotConditional, NotGenerative
from service.metrics import Metrics
from service.settings import Settings

from ...registries import load_registry
from ...tolerance import assert_close

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def models(zoo):
    return load_registry(Settings(models_dir=zoo), ThreadPoolExecutor(1), Metrics()).models


def test_capabilities_follow_the_declared_graphs(models):
    ae, vae, cvae = models["tiny-ae"], models["tiny-vae"], models["tiny-cvae"]
    assert (ae.has_prior, ae.has_posterior, ae.conditional) == (False, False, False)
    assert (vae.has_prior, vae.has_posterior, vae.conditional) == (True, True, False)
    assert (cvae.conditional, cvae.encoder_takes_label, cvae.decoder_takes_label) == (True, True, True)


def test_labels_resolve_by_name_or_index(models):
    cvae = models["tiny-cvae"]
    assert cvae.labels.resolve(["two", 0, "1"], 3, required=True).tolist() == [2, 0, 1]
    assert cvae.labels.resolve(["one"], 4, required=True).tolist() == [1, 1, 1, 1]


@pytest.mark.parametrize("bad", ["three", 3, -1, "1.5", True])
def test_unknown_labels_are_invalid_and_list_the_classes(models, bad):
    with pytest.raises(InvalidInput, match=r"\['zero', 'one', 'two'\]"):
        models["tiny-cvae"].labels.resolve([bad], 1, required=True)


@pytest.mark.parametrize("bad", ["²", "①", "¹", "١", "٣", "0" * 10 + "1", "1" * 5_000, "-1", "+1", "0x1"])
def test_labels_are_ascii_digits_of_bounded_length_and_never_crash(models, bad):
    # str.isdigit() takes '²' and '①' and int() refuses them; int() of 5,000 digits raises too: both were 500s.
    with pytest.raises(InvalidInput, match="is not a class of model") as error:
        models["tiny-cvae"].labels.resolve([bad], 1, required=True)
    assert len(str(error.value)) < 300  # a 5,000-digit label is not echoed in full


def test_padded_index_and_names_that_look_like_indices(models):
    assert models["tiny-cvae"].labels.resolve([" 2 ", "002"], 2, required=True).tolist() == [2, 2]


def test_label_count_must_be_one_or_one_per_row(models):
    with pytest.raises(InvalidInput, match="2 labels for 3 rows"):
        models["tiny-cvae"].labels.resolve([0, 1], 3, required=True)


def test_label_rules_for_conditional_and_unconditional_models(models):
    with pytest.raises(LabelRequired):
        models["tiny-cvae"].labels.resolve(None, 2, required=True)
    with pytest.raises(NotConditional):
        models["tiny-vae"].labels.resolve([1], 2, required=False)
    assert models["tiny-vae"].labels.resolve(None, 2, required=True) is None


async def test_same_seed_same_samples_different_seed_different(models):
    vae = models["tiny-vae"]
    a = (await vae.sample(5, np.random.default_rng(7), 1.0, None)).images
    b = (await vae.sample(5, np.random.default_rng(7), 1.0, None)).images
    c = (await vae.sample(5, np.random.default_rng(8), 1.0, None)).images
    assert a.shape == (5, 1, 8, 8) and a.min() >= 0 and a.max() <= 1
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


async def test_temperature_zero_decodes_the_prior_mean(models):
    vae = models["tiny-vae"]
    images = (await vae.sample(3, np.random.default_rng(0), 0.0, None)).images
    expected = await vae.decode(np.zeros((1, 4), np.float32))
    assert_close(images, np.repeat(expected, 3, axis=0))


async def test_ae_has_no_prior_and_no_posterior(models):
    ae = models["tiny-ae"]
    with pytest.raises(NotGenerative, match="no distribution to sample from"):
        await ae.sample(1, np.random.default_rng(0), 1.0, None)
    encoding = await ae.encode(np.zeros((1, 1, 8, 8), np.float32))
    assert encoding.logvar is None
    with pytest.raises(NotGenerative, match="deterministic autoencoder"):
        ae.posterior_draws(encoding, 2, np.random.default_rng(0))


async def test_posterior_draws_center_on_mu_with_the_encoded_spread(models):
    vae = models["tiny-vae"]
    images = np.random.default_rng(1).random((2, 1, 8, 8), dtype=np.float32)
    encoding = await vae.encode(images)
    z = vae.posterior_draws(encoding, 4000, np.random.default_rng(0))
    assert z.shape == (2, 4000, 4)
    np.testing.assert_allclose(z.mean(axis=1), encoding.mu, atol=0.05)
    np.testing.assert_allclose(z.std(axis=1), np.exp(0.5 * encoding.logvar), rtol=0.1)


async def test_reconstruction_error_is_the_sum_of_squared_pixel_errors(models):
    cvae = models["tiny-cvae"]
    images = np.random.default_rng(2).random((3, 1, 8, 8), dtype=np.float32)
    result = await cvae.reconstruct(images, ["one"])
    recon, errors, labels = result.images, result.errors, result.labels
    assert labels.tolist() == [1, 1, 1]
    np.testing.assert_allclose(errors, ((recon - images) ** 2).sum(axis=(1, 2, 3)), rtol=1e-5)
    mu = (await cvae.encode(images, labels)).mu
    assert_close(recon, await cvae.decode(mu, labels))  # decoded at z = mu


async def test_conditioned_encoder_uses_the_label(models):
    cvae = models["tiny-cvae"]
    images = np.zeros((1, 1, 8, 8), np.float32)
    zero = (await cvae.encode(images, cvae.labels.resolve([0], 1, required=True))).mu
    two = (await cvae.encode(images, cvae.labels.resolve(["two"], 1, required=True))).mu
    assert not np.allclose(zero, two)


@pytest.mark.parametrize("name", ["tiny-ae", "tiny-vae", "tiny-cvae"])
async def test_reconstruct_runs_both_graphs_in_one_bound_call_with_the_same_result(models, name):
    model = models[name]
    on_gpu = model.encoder.providers[0] in GPU_PROVIDERS
    assert model.chain.session.device == ("cuda" if on_gpu else "cpu")  # the latent stays where the encoder ran
    images = np.random.default_rng(3).random((5, 1, 8, 8), dtype=np.float32)
    labels = [2] if model.conditional else None
    result = await model.reconstruct(images, labels)
    recon, resolved = result.images, result.labels
    two_calls = await model.decode((await model.encode(images, resolved)).mu, resolved)
    assert_close(recon, two_calls)

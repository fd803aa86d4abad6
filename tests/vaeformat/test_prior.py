"""vaeformat/prior.py: drawing from the fitted mixture, reading its file safely, and refusing a bad one at load."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from vaeformat.errors import ManifestError
from vaeformat.manifest import load_manifest
from vaeformat.prior import FittedPrior, PriorFormatError, load_prior, read_prior

from ..prior_models import add_prior, mixture
from ..tiny_models import build_model


def test_draws_are_seeded_and_follow_the_weights_and_the_classes():
    prior = mixture(classes=2, latent_dim=3)
    labels = np.array([0, 1] * 2000)
    a = prior.draw(4000, np.random.default_rng(7), 1.0, labels)
    b = prior.draw(4000, np.random.default_rng(7), 1.0, labels)
    c = prior.draw(4000, np.random.default_rng(8), 1.0, labels)
    assert a.shape == (4000, 3) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    first = a[labels == 0, 0]
    assert abs((first > 0).mean() - 0.75) < 0.03  # the heavier component, +5, takes 3 draws in 4
    assert np.allclose(np.abs(first).mean(), 5.0, atol=0.1)
    assert np.allclose(np.abs(a[labels == 1, 0]).mean(), 10.0, atol=0.1)  # class 1's components sit at +-10


def test_temperature_scales_each_component_around_its_mean():
    prior = mixture(classes=1, latent_dim=2)
    cold = prior.draw(2000, np.random.default_rng(0), 0.0, None)
    assert set(np.unique(cold[:, 0])) == {-5.0, 5.0} and np.all(cold[:, 1] == 0)
    warm = prior.draw(20000, np.random.default_rng(0), 0.5, None)
    assert np.std(warm[:, 1]) == pytest.approx(0.5, rel=0.03)  # not 0.5 around the mixture's overall mean
    assert np.std(warm[warm[:, 0] > 0, 0]) == pytest.approx(0.5, rel=0.03)


def test_log_density_is_the_mixture_density():
    prior = mixture(classes=1, latent_dim=2)
    z = np.array([[5.0, 0.0], [-5.0, 1.0], [0.0, 0.0]])
    expected = []
    for point in z:
        terms = [w * np.exp(-0.5 * ((point - m) ** 2).sum()) for w, m in zip([0.25, 0.75], prior.means[0], strict=True)]
        dens = sum(terms) / (2 * np.pi)
        expected.append(np.log(dens))
    assert np.allclose(prior.log_density(z), expected)


def npz(**arrays) -> io.BytesIO:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    return buf


def test_read_refuses_pickles_missing_arrays_and_garbage():
    ok = mixture(1, 2)
    with pytest.raises(PriorFormatError, match="readable .npz"):
        read_prior(npz(weights=np.array([{"a": 1}], dtype=object), means=ok.means, scales=ok.scales))
    with pytest.raises(PriorFormatError, match=r"lacks the array\(s\) \['scales'\]"):
        read_prior(npz(weights=ok.weights, means=ok.means))
    with pytest.raises(PriorFormatError, match="readable .npz"):
        read_prior(io.BytesIO(b"not a zip file"))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: FittedPrior(p.weights, p.means[:, :, :1], p.scales[:, :, :1, :1]), "latent_dim 2"),
        (lambda p: FittedPrior(p.weights * 2, p.means, p.scales), "sum to 1"),
        (lambda p: FittedPrior(p.weights, p.means * np.nan, p.scales), "NaN"),
        (lambda p: FittedPrior(p.weights, p.means, -p.scales), "positive diagonal"),
    ],
)
def test_check_names_what_is_wrong(change, message):
    with pytest.raises(PriorFormatError, match=message):
        change(mixture(1, 2)).check(latent_dim=2, classes=1)


def test_load_checks_the_hash_the_shape_and_names_the_file_and_field(tmp_path: Path):
    folder = tmp_path / "m"
    build_model(folder, kind="vae", latent_dim=2)
    assert load_prior(folder, load_manifest(folder)) is None  # no prior: nothing to load
    prior = add_prior(folder)
    loaded = load_prior(folder, load_manifest(folder))
    assert loaded is not None and np.array_equal(loaded.means, prior.means)

    with open(folder / "prior.npz", "ab") as f:
        f.write(b"x")
    with pytest.raises(ManifestError, match=r"prior.npz: sha256 is .* manifest field 'prior.sha256'.*fit-prior"):
        load_prior(folder, load_manifest(folder))
    (folder / "prior.npz").unlink()
    with pytest.raises(ManifestError, match=r"prior.npz: missing, but manifest field 'prior.path' names it"):
        load_prior(folder, load_manifest(folder))

    add_prior(folder, mixture(classes=3, latent_dim=2))  # a cvae's prior for an unconditional model
    with pytest.raises(ManifestError, match=r"prior.npz: shapes .* 1 class\(es\) and latent_dim 2.*'prior.path'"):
        load_prior(folder, load_manifest(folder))


def test_a_prior_path_that_leaves_the_folder_is_refused_at_validation(tmp_path: Path):
    folder = tmp_path / "m"
    build_model(folder, kind="vae", latent_dim=2)
    add_prior(folder)
    raw = json.loads((folder / "manifest.json").read_text())
    raw["prior"]["path"] = "../prior.npz"
    (folder / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"field 'prior.path'.*climbs out"):
        load_manifest(folder)


def test_older_manifests_without_a_prior_still_load(zoo: Path):
    m = load_manifest(zoo / "tiny-vae")
    assert m.prior is None and m.metrics.score_quantiles is None

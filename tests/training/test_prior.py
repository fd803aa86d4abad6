"""training/prior.py: the mixture fit, BIC's choice of components, the file round trip, and `fit-prior`."""

import json

import numpy as np
import pytest

pytest.importorskip("sklearn")
pytest.importorskip("torch")

from tests.training.quick import QUICK  # noqa: E402
from training.cli import main  # noqa: E402
from training.prior import fit_mixture, to_prior  # noqa: E402
from vaeformat.files import sha256_file  # noqa: E402
from vaeformat.manifest import load_manifest, verify_prior  # noqa: E402
from vaeformat.prior import PRIOR_FILE, read_prior, write_prior  # noqa: E402


def clusters(centres: np.ndarray, per: int, spread: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([c + spread * rng.standard_normal((per, centres.shape[1])) for c in centres])


def test_held_out_likelihood_finds_three_separated_clusters_and_one_for_a_single_gaussian():
    three = clusters(np.array([[0.0, 0.0, 0.0], [8.0, 0.0, 0.0], [0.0, 8.0, 8.0]]), 300, 1.0)
    assert fit_mixture(three).n_components == 3
    one = clusters(np.zeros((1, 3)), 3000, 1.0, seed=1)
    assert fit_mixture(one).n_components == 1


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7])
def test_a_class_with_a_handful_of_images_still_gets_a_mixture(n):
    points = np.random.default_rng(n).standard_normal((n, 3))
    mixture = fit_mixture(points)
    assert mixture.n_components == 1 and np.isfinite(mixture.score(points))


def test_a_tied_fit_comes_back_with_one_full_covariance_per_component():
    points = clusters(np.array([[0.0, 0.0], [6.0, 6.0]]), 300, 1.0)
    tied = fit_mixture(points, covariances=("tied",))
    assert tied.covariances_.shape == (tied.n_components, 2, 2)
    assert np.allclose(tied.covariances_[0], tied.covariances_[-1])


def test_the_fit_is_seeded():
    points = clusters(np.array([[0.0, 0.0], [5.0, 5.0]]), 200, 1.0)
    a, b = fit_mixture(points), fit_mixture(points)
    assert np.array_equal(a.means_, b.means_) and np.array_equal(a.covariances_, b.covariances_)


def test_padded_per_class_arrays_survive_a_round_trip_without_pickle(tmp_path):
    two = fit_mixture(clusters(np.array([[0.0, 0.0], [9.0, 9.0]]), 200, 1.0), candidates=(2,), covariances=("full",))
    one = fit_mixture(clusters(np.array([[3.0, -3.0]]), 400, 0.5, seed=2), candidates=(1,))
    prior = to_prior([two, one])
    assert prior.components() == [2, 1] and prior.weights.shape == (2, 2)
    prior.check(latent_dim=2, classes=2)
    path = write_prior(tmp_path / PRIOR_FILE, prior)
    with np.load(path, allow_pickle=False) as npz:  # plain arrays only
        assert sorted(npz.files) == ["means", "scales", "weights"]
    with open(path, "rb") as f:
        back = read_prior(f)
    for name in ("weights", "means", "scales"):
        assert np.array_equal(getattr(back, name), getattr(prior, name))
    # The covariance the file stores is the one the mixture fitted.
    assert np.allclose(back.scales[0, 1] @ back.scales[0, 1].T, two.covariances_[1])
    z = back.draw(4000, np.random.default_rng(0), 1.0, np.ones(4000, dtype=np.int64))
    assert np.allclose(z.mean(0), [3.0, -3.0], atol=0.05)  # class 1 draws from class 1's mixture


ON_CPU = [*QUICK, "--device", "cpu"]


def test_export_fits_a_prior_and_fit_prior_refits_the_same_one_on_a_model_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # checkpoints/ goes here
    out = tmp_path / "models" / "tiny-cvae"
    assert main(["train", "--kind", "cvae", "--dataset", "digits", "--limit", "300", "--out", str(out), *ON_CPU]) == 0
    manifest = load_manifest(out)
    assert manifest.prior is not None and len(manifest.prior.components) == 10
    assert manifest.prior.fitted_on == 1797 - 60  # every non-held-out row of the dataset
    assert manifest.prior.selection.endswith("fitted to posterior means")  # a cvae: means, not its codes
    exported = sha256_file(out / PRIOR_FILE)
    m = manifest.metrics
    assert m.label_agreement_fitted is not None and m.frechet_distance_fitted is not None
    assert len(m.score_quantiles["nll"]) == 101 and len(m.score_quantiles["squared_error"]) == 101
    assert m.score_quantiles["nll"] == sorted(m.score_quantiles["nll"])

    # Without the prior (as an older export), fit-prior writes it again from the folder and the dataset alone.
    (out / PRIOR_FILE).unlink()
    raw = json.loads((out / "manifest.json").read_text())
    raw.pop("prior")
    for key in ("label_agreement_fitted", "frechet_distance_fitted", "score_quantiles"):
        raw["metrics"].pop(key)
    raw["description"] = "written by someone else meanwhile"
    (out / "manifest.json").write_text(json.dumps(raw))
    capsys.readouterr()
    assert main(["fit-prior", str(out), "--iw-samples", "8", "--device", "cpu"]) == 0
    assert "frechet_distance_fitted" in capsys.readouterr().out
    again = load_manifest(out)
    assert verify_prior(out, again) is not None
    assert sha256_file(out / PRIOR_FILE) == exported  # the same fit as at export: seeded, same rows
    assert again.description == "written by someone else meanwhile"
    # The same figures as the export measured; the label-free quantiles went with the popped score_quantiles and are
    # fit-ood's to write again.
    unconditional = {k: v for k, v in m.score_quantiles.items() if k != "marginal_nll"}
    assert again.metrics == m.model_copy(update={"score_quantiles": unconditional})


def test_fit_prior_on_a_folder_without_a_manifest_fails_with_a_message(tmp_path, capsys):
    assert main(["fit-prior", str(tmp_path)]) == 2
    assert "manifest.json" in capsys.readouterr().err

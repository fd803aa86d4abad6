"""End to end through the command line: a tiny model, one short epoch, export, parity, manifest, re-evaluation."""

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from tests.training.quick import QUICK  # noqa: E402
from training.cli import main  # noqa: E402
from vaeformat.manifest import load_manifest, verify_files  # noqa: E402


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # checkpoints/ goes here
    return tmp_path


def test_train_exports_a_model_the_service_schema_accepts_and_evaluate_reproduces(in_tmp, capsys):
    out = in_tmp / "models" / "tiny-vae"
    assert main(["train", "--kind", "vae", "--dataset", "mnist", "--limit", "300", "--out", str(out), *QUICK]) == 0
    manifest = load_manifest(out)
    verify_files(out, manifest)
    assert manifest.kind == "vae" and manifest.latent_dim == 4 and manifest.image.height == 28
    split = manifest.training.split
    assert (split.train_size, split.validation_size, split.test_size) == (220, 20, 60)
    assert len(set(split.test_indices)) == 60 and max(split.test_indices) < 5000
    m = manifest.metrics
    assert m.n_images == 60 and m.iw_samples == 8
    assert m.iw_bound <= m.negative_elbo + 1e-3  # the importance-weighted bound is the tighter one
    assert m.negative_elbo == pytest.approx(m.reconstruction + m.kl, rel=0.05)
    # Per latent dimension (/traverse ranks by them): the KL terms add up to the KL; the code variances decide
    # the active units.
    assert len(m.kl_per_dim) == 4 and sum(m.kl_per_dim) == pytest.approx(m.kl, rel=1e-4)
    assert len(m.code_variance) == 4 and m.active_units == sum(v > 0.01 for v in m.code_variance)
    assert {"samples", "reconstructions", "curves"} <= set(manifest.reports)
    assert all((out / f).is_file() for f in manifest.reports.values())
    assert not list((in_tmp / "checkpoints").iterdir())  # removed once the model is written
    printed = capsys.readouterr().out.strip().splitlines()
    # No Makefile here, so not "make run": the command that serves the folder from anywhere.
    assert printed[-1].startswith(
        f"serve it: vae-serve --models-dir {out.parent}, then curl localhost:8000/models/tiny-vae"
    )
    assert manifest.training.dataset == "mnist"

    # /score's out-of-distribution test, fitted on the 20 validation rows, never on held-out ones.
    assert m.ood is not None and m.ood.features == ["nll", "kl", "reconstruction", "complexity", "pixel_nll"]
    # Its pixel model counts the training rows only (not the validation or held-out ones, nor rows past --limit).
    assert m.ood.pixels is not None and (out / m.ood.pixels.path).is_file()
    assert m.ood.pixels.fitted_on == split.train_size == 220
    assert len(m.ood.rows) == 20 and not set(m.ood.rows) & set(split.test_indices)
    assert len(m.ood.quantiles) == 101 and m.ood.samples == 64

    before = json.loads((out / "manifest.json").read_text())["metrics"]
    assert main(["evaluate", str(out), "--iw-samples", "8", "--write"]) == 0
    assert "the manifest records" not in capsys.readouterr().out  # the same figures, measured again
    assert json.loads((out / "manifest.json").read_text())["metrics"] == before
    # fit-ood makes the split again from the fractions it was trained with (--limit runs cannot be remade: refused).
    assert main(["fit-ood", str(out), "--iw-samples", "8"]) == 2
    assert "do not make the split the manifest records" in capsys.readouterr().err


def test_cvae_on_bundled_digits_reports_generation_figures(in_tmp):
    out = in_tmp / "models" / "tiny-cvae"
    assert main(["train", "--kind", "cvae", "--dataset", "digits", "--out", str(out), *QUICK]) == 0
    manifest = load_manifest(out)
    assert manifest.labels == [str(d) for d in range(10)] and manifest.encoder_conditioned
    assert [t.name for t in manifest.files.decoder.inputs] == ["z", "label"]
    m = manifest.metrics
    assert m.classifier_accuracy > 0.8  # the judge itself must be good for its verdicts to mean anything
    assert 0.0 <= m.label_agreement <= 1.0 and m.frechet_floor < m.frechet_distance
    # Without labels: -log p(x) over the labels is at most the conditional bound + log 10 (here with K=8 per label
    # against the bound's own draws, so with slack); p(y|x)'s accuracy is written (one epoch of a tiny model barely
    # uses the label: the shipped mnist-cvae's is checked through the service in tests/integration/test_ood.py).
    assert m.marginal_nll is not None and m.marginal_nll < m.iw_bound + np.log(10) + 2.0
    assert m.label_accuracy is not None
    assert m.score_quantiles is not None and len(m.score_quantiles["marginal_nll"]) == 101


def test_ae_has_no_bound_but_a_reconstruction_term(in_tmp):
    out = in_tmp / "models" / "tiny-ae"
    assert main(["train", "--kind", "ae", "--dataset", "mnist", "--limit", "200", "--out", str(out), *QUICK]) == 0
    m = load_manifest(out).metrics
    assert m.iw_bound is None and m.negative_elbo is None
    assert m.reconstruction > 0 and m.recon_squared_error > 0
    assert m.kl_per_dim is None and len(m.code_variance) == 4  # an ae's dimensions rank by their variance
    assert m.active_units == sum(v > 0.01 for v in m.code_variance)


def test_bad_data_is_a_message_and_exit_2_not_a_traceback(in_tmp, capsys):
    np.savez(in_tmp / "unlabelled.npz", x=np.zeros((30, 8, 8), np.uint8))
    code = main(["train", "--kind", "cvae", "--dataset", f"npz:{in_tmp / 'unlabelled.npz'}", "--out", "m", *QUICK])
    assert code == 2
    assert "a cvae needs class labels" in capsys.readouterr().err
    assert not (in_tmp / "m").exists()


def test_evaluate_refuses_a_tampered_model(in_tmp, capsys):
    out = in_tmp / "models" / "tiny"
    main(["train", "--kind", "ae", "--dataset", "digits", "--limit", "100", "--out", str(out), *QUICK])
    with open(out / "decoder.onnx", "ab") as f:
        f.write(b"\0")
    assert main(["evaluate", str(out)]) == 2
    assert "files.decoder.sha256" in capsys.readouterr().err

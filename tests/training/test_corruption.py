"""training/corruption.py and denoising training: what each corruption does, and what the manifest records."""

import argparse

import pytest

torch = pytest.importorskip("torch")

from tests.training.quick import QUICK  # noqa: E402
from training.cli import main  # noqa: E402
from training.corruption import Corruption  # noqa: E402
from vaeformat.manifest import load_manifest  # noqa: E402


def test_parse_accepts_the_three_kinds_and_says_what_it_wants_otherwise():
    assert Corruption.parse("gaussian:0.5") == Corruption("gaussian", 0.5)
    assert str(Corruption.parse("saltpepper:0.1")) == "saltpepper:0.1"
    for bad in ("mask", "mask:1.5", "blur:0.3", "gaussian:-1", "mask:x"):
        with pytest.raises(argparse.ArgumentTypeError, match="gaussian:STD"):
            Corruption.parse(bad)


def test_each_corruption_is_seeded_and_does_what_it_says():
    x = torch.full((4, 1, 50, 50), 0.5)
    gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    masked = Corruption("mask", 0.3)(x, gen())
    assert torch.equal(masked, Corruption("mask", 0.3)(x, gen()))
    assert ((masked == 0).float().mean() - 0.3).abs() < 0.02 and set(masked.unique().tolist()) == {0.0, 0.5}
    sp = Corruption("saltpepper", 0.2)(x, gen())
    assert ((sp != 0.5).float().mean() - 0.2).abs() < 0.02 and set(sp.unique().tolist()) == {0.0, 0.5, 1.0}
    noisy = Corruption("gaussian", 0.1)(x, gen())
    assert (noisy - x).std().item() == pytest.approx(0.1, rel=0.05) and noisy.min() >= 0 and noisy.max() <= 1
    assert torch.equal(x, torch.full((4, 1, 50, 50), 0.5))  # the clean batch (the target) is untouched


def test_a_denoising_ae_records_its_corruption_and_its_denoising_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "models" / "tiny-dae"
    args = [
        "train",
        "--kind",
        "ae",
        "--dataset",
        "digits",
        "--limit",
        "100",
        "--corrupt",
        "mask:0.3",
        "--out",
        str(out),
        *QUICK,
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    m = load_manifest(out)
    assert m.training.corrupt == "mask:0.3"
    assert m.metrics.denoising_squared_error is not None
    assert m.metrics.denoising_squared_error > 0

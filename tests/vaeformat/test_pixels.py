"""vaeformat/pixels.py: the per-pixel histograms of the out-of-distribution test, their file, and loading it."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest

from vaeformat.errors import ManifestError
from vaeformat.estimates import image_statistics
from vaeformat.files import sha256_file
from vaeformat.manifest import OodFit, PixelsFile, load_manifest, write_manifest
from vaeformat.pixels import (
    PIXELS_FILE,
    PixelModel,
    PixelsFormatError,
    fit_pixels,
    load_pixels,
    read_pixels,
    write_pixels,
)

from ..tiny_models import build_model
from .test_prior import npz


def _garments(n: int, rng: np.random.Generator, size: int = 8) -> np.ndarray:
    """Bright squares in the middle of a black frame, of varying brightness: [n, 1, size, size]."""
    images = np.zeros((n, 1, size, size), np.float32)
    images[:, :, 2:-2, 2:-2] = rng.uniform(0.5, 1.0, (n, 1, 1, 1))
    return images


def test_each_pixel_counts_its_own_values_plus_one():
    images = np.array([[[[0.0, 1.0]]], [[[0.0, 0.99]]], [[[0.3, 1.0]]]], np.float32)  # [3, 1, 1, 2]
    model = fit_pixels([images], bins=4)
    probs = np.exp(model.log_probs.astype(np.float64))
    # Pixel 0: bins 0, 0, 1 -> counts 2, 1, 0, 0 plus one each; pixel 1: bin 3 three times (1.0 is the top bin).
    assert probs[0] == pytest.approx(np.array([3, 2, 1, 1]) / 7)
    assert probs[1] == pytest.approx(np.array([1, 1, 1, 4]) / 7)
    expected = -(math.log(3 / 7) + math.log(4 / 7))
    assert model.nll(np.array([[[[0.1, 0.9]]]], np.float32))[0] == pytest.approx(expected, rel=1e-6)


def test_batches_count_as_one_and_unseen_values_cost_a_bounded_amount():
    rng = np.random.default_rng(0)
    images = _garments(200, rng)
    whole, parts = fit_pixels([images]), fit_pixels([images[:70], images[70:]])
    assert np.array_equal(whole.log_probs, parts.log_probs)
    like = whole.nll(_garments(50, np.random.default_rng(1)))
    frame = np.full((1, 1, 8, 8), 0.6, np.float32)  # a grey patch fills the frame the squares leave black
    unlike = whole.nll(frame)
    assert unlike[0] > like.max() + 100
    # Never infinite: a value no training image had costs log(N + BINS) at most, per pixel.
    assert unlike[0] <= 64 * math.log(200 + whole.bins) + 1e-6
    with pytest.raises(ValueError, match="no images"):
        fit_pixels([])


def test_image_statistics_add_pixel_nll_only_with_a_pixel_model():
    images = _garments(3, np.random.default_rng(2))
    assert set(image_statistics(images, None)) == {"complexity"}
    stats = image_statistics(images, fit_pixels([images]))
    assert set(stats) == {"complexity", "pixel_nll"} and stats["pixel_nll"].shape == (3,)


def test_read_and_check_refuse_what_is_not_a_pixel_model():
    with pytest.raises(PixelsFormatError, match="readable .npz"):
        read_pixels(npz(log_probs=np.array([{"a": 1}], dtype=object)))
    with pytest.raises(PixelsFormatError, match=r"lacks the array\(s\) \['log_probs'\]"):
        read_pixels(npz(other=np.zeros(3)))
    with pytest.raises(PixelsFormatError, match="readable .npz"):
        read_pixels(io.BytesIO(b"not a zip file"))
    model = fit_pixels([_garments(5, np.random.default_rng(3))])
    with pytest.raises(PixelsFormatError, match=r"shape \[64, 16\]; want \[192, BINS\]"):
        model.check(192)
    with pytest.raises(PixelsFormatError, match="finite log distribution"):
        PixelModel(model.log_probs + 1.0).check(64)
    model.check(64)


def _with_pixels(folder: Path, model: PixelModel, bins: int | None = None) -> None:
    """Name a pixel model in the manifest's out-of-distribution test, as fit-ood does."""
    path = write_pixels(folder / PIXELS_FILE, model)
    entry = PixelsFile(path=PIXELS_FILE, sha256=sha256_file(path), bins=bins or model.bins, fitted_on=5)
    ood = OodFit(
        features=["complexity", "pixel_nll"],
        weights=[1.0],
        means=[[300.0, 100.0]],
        precisions=[[[1.0, 0.0], [0.0, 1.0]]],
        quantiles=[0.0, 1.0],
        samples=64,
        fitted_on="validation split",
        rows=[],
        pixels=entry,
    )
    m = load_manifest(folder)
    write_manifest(folder, m.model_copy(update={"metrics": m.metrics.model_copy(update={"ood": ood})}))


def test_load_checks_the_hash_the_size_and_the_bins(tmp_path: Path):
    folder = tmp_path / "m"
    build_model(folder, kind="vae", latent_dim=2)  # 1 x 8 x 8 images
    assert load_pixels(folder, load_manifest(folder)) is None  # no test, no pixel model
    model = fit_pixels([_garments(5, np.random.default_rng(4))])
    _with_pixels(folder, model)
    loaded = load_pixels(folder, load_manifest(folder))
    assert loaded is not None and np.array_equal(loaded.log_probs, model.log_probs)

    with open(folder / PIXELS_FILE, "ab") as f:
        f.write(b"x")
    with pytest.raises(ManifestError, match=r"pixels.npz: sha256 is .*'metrics.ood.pixels.sha256'.*fit-ood"):
        load_pixels(folder, load_manifest(folder))
    _with_pixels(folder, fit_pixels([np.zeros((2, 3, 8, 8), np.float32)]))  # an RGB model's pixels
    with pytest.raises(ManifestError, match=r"pixels.npz: log_probs has shape \[192, 16\]; want \[64, BINS\]"):
        load_pixels(folder, load_manifest(folder))
    _with_pixels(folder, model, bins=8)
    with pytest.raises(ManifestError, match=r"holds 16 bins, but manifest field 'metrics.ood.pixels.bins' says 8"):
        load_pixels(folder, load_manifest(folder))


def test_the_feature_pixel_nll_needs_the_pixel_model():
    with pytest.raises(ValueError, match="pixel_nll needs the pixel model"):
        OodFit(
            features=["pixel_nll"],
            weights=[1.0],
            means=[[1.0]],
            precisions=[[[1.0]]],
            quantiles=[0.0, 1.0],
            samples=64,
            fitted_on="validation split",
            rows=[],
        )

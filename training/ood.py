"""Fit /score's out-of-distribution test (vaeformat/estimates.py) on validation images, through the exported graphs.

The statistics are computed as the service computes them, with the same functions: K importance samples per image
(and per label, for a conditional model, whose test uses -log p(x) summed over the labels), one seeded
binarization for a Bernoulli model, the compressed length of the image, and its -log likelihood under the pixel
model (vaeformat/pixels.py), which is fitted here on training images.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from vaeformat.estimates import (
    OodTest,
    binarize,
    columns,
    from_weights,
    image_statistics,
    log_bernoulli,
    log_gaussian,
    log_normal,
    log_standard_normal,
    mixed,
)
from vaeformat.files import sha256_file
from vaeformat.manifest import Manifest, Metrics, OodFeature, OodFit, PixelsFile
from vaeformat.pixels import BINS, PIXELS_FILE, PixelModel, fit_pixels, write_pixels

from .data import DataError, Dataset, split_dataset
from .evaluate import EVAL_SEED
from .graphs import OnnxPair

OOD_SAMPLES = 64  # what /score draws by default; the statistics are fitted at it
OOD_SEED = 20240602
MAX_FIT_IMAGES = 2000  # validation images the test is fitted on (a stratified-by-order subset when there are more)
ROWS_PER_DECODE = 16384
COMPONENTS = (1, 2, 3, 4, 6, 8)  # mixture sizes tried, by BIC
FOLDS = 5
RIDGE = 1e-3  # added to each variance, in units of the feature's spread
FIT_IMAGES_PER_COMPONENT = 100  # a component needs this many fit images, so 400 validation digits allow 4
MAX_PIXEL_IMAGES = 20000  # training images the pixel model counts (a seeded subset when there are more)


def features_of(stochastic: bool, pixels: bool = True) -> list[OodFeature]:
    features: list[OodFeature] = ["nll", "kl", "reconstruction"] if stochastic else ["squared_error"]
    features.append("complexity")
    if pixels:
        features.append("pixel_nll")
    return features


def _log_px_z(decoded: np.ndarray, target: np.ndarray, likelihood: str, sigma: float | None) -> np.ndarray:
    """[B, K, C, H, W] decoder output (logits or means) against target [B, 1, C, H, W] -> [B, K]."""
    if likelihood == "bernoulli":
        return log_bernoulli(decoded, target)
    assert sigma is not None
    return log_gaussian(decoded, target, sigma)


def statistics(
    pair: OnnxPair,
    x: np.ndarray,
    *,
    stochastic: bool,
    num_classes: int | None,
    likelihood: str,
    sigma: float | None,
    pixels: PixelModel | None = None,
    k: int = OOD_SAMPLES,
    seed: int = OOD_SEED,
) -> dict[str, np.ndarray]:
    """The test's statistics for images x [N, C, H, W] in [0, 1] (+ ess, label_log_probs for the report)."""
    rng = np.random.default_rng(seed)
    binary = likelihood == "bernoulli"
    target = binarize(x, rng) if binary else x
    stats = image_statistics(x, pixels)
    labels = list(range(num_classes)) if num_classes else [None]
    if not stochastic:
        recon = pair.decode(pair.encode(x)["mu"])["image"]
        stats["squared_error"] = ((recon - x) ** 2).reshape(len(x), -1).sum(1, dtype=np.float64)
        return stats
    n = len(x)
    log_w = np.empty((n, len(labels), k))
    rec = np.empty((n, len(labels)))
    kl = np.empty((n, len(labels)))
    output = "logits" if binary else "image"
    per = max(1, ROWS_PER_DECODE // k)
    for j, label in enumerate(labels):
        lab = None if label is None else np.full(n, label, np.int64)
        codes = pair.encode(x, lab)
        mu, logvar = codes["mu"].astype(np.float64), codes["logvar"].astype(np.float64)
        kl[:, j] = 0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar).sum(1)
        for start in range(0, n, per):
            sl = slice(start, min(n, start + per))
            b = sl.stop - sl.start
            eps = rng.standard_normal((b, k, mu.shape[1]))
            z = mu[sl, None] + np.exp(0.5 * logvar[sl, None]) * eps  # [b, K, D]
            decoded = pair.decode(z.reshape(b * k, -1).astype(np.float32), None if lab is None else lab[sl].repeat(k))
            out = decoded[output].reshape(b, k, *x.shape[1:])
            log_px_z = _log_px_z(out, target[sl, None], likelihood, sigma)
            log_w[sl, j] = log_px_z + log_standard_normal(z) - log_normal(z, mu[sl, None], logvar[sl, None])
            rec[sl, j] = -log_px_z.mean(1)
    estimate = from_weights(log_w)
    stats.update(nll=estimate.nll, kl=mixed(kl, estimate), reconstruction=mixed(rec, estimate), ess=estimate.ess)
    if estimate.label_log_probs is not None:
        stats["label_log_probs"] = estimate.label_log_probs
    return stats


def fit_rows(validation: np.ndarray, seed: int) -> np.ndarray:
    """The validation rows the test is fitted on: all of them, or a seeded MAX_FIT_IMAGES of them."""
    if len(validation) <= MAX_FIT_IMAGES:
        return np.sort(validation)
    return np.sort(np.random.default_rng(seed).choice(validation, MAX_FIT_IMAGES, replace=False))


def _mixture(x: np.ndarray, m: int) -> GaussianMixture:
    """Fitted on features in units of their spread, with a ridge of RIDGE of it on each variance: a statistic that
    repeats one value exactly (a capped length) would otherwise make a spike of density that anything sharing the
    value falls into."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        g = GaussianMixture(m, covariance_type="full", reg_covar=RIDGE, n_init=2, random_state=OOD_SEED)
        return g.fit(x / _scale(x))


def _scale(x: np.ndarray) -> np.ndarray:
    return np.where(x.std(0) > 0, x.std(0), 1.0)


def _as_fit(g: GaussianMixture, scale: np.ndarray, features: list[OodFeature], **rest) -> OodFit:
    """The mixture in the features' own units (it was fitted on them divided by `scale`)."""
    return OodFit(
        features=features,
        weights=(g.weights_ / g.weights_.sum()).tolist(),
        means=(g.means_ * scale).tolist(),
        precisions=(g.precisions_ / np.outer(scale, scale)).tolist(),
        **rest,
    )


def fit(
    stats: dict[str, np.ndarray],
    stochastic: bool,
    rows: np.ndarray,
    binary: bool,
    fitted_on: str,
    pixels: PixelsFile | None = None,
) -> OodFit:
    """A full-covariance Gaussian mixture over the features, its number of components chosen by BIC among
    COMPONENTS (fewer when there are few images), and the quantiles of the fit images' -log densities, each
    measured by a mixture fitted without it (FOLDS folds): scored by the mixture they shaped, the fit images would
    look more typical than new images do, and the threshold would flag more new in-distribution images than it
    says."""
    features = features_of(stochastic, pixels is not None)
    x = columns(stats, features)
    candidates = [m for m in COMPONENTS if m * FIT_IMAGES_PER_COMPONENT <= len(x)] or [1]
    best = min((_mixture(x, m) for m in candidates), key=lambda g: g.bic(x / _scale(x)))
    rest = dict(
        quantiles=[0.0, 1.0],
        samples=OOD_SAMPLES,
        binarization_seed=OOD_SEED if binary else None,
        fitted_on=fitted_on,
        rows=[int(r) for r in rows],
        pixels=pixels,
    )
    folds = np.random.default_rng(OOD_SEED).permutation(len(x)) % FOLDS
    own = np.empty(len(x))
    for f in range(FOLDS):
        held = folds == f
        other = _mixture(x[~held], best.n_components)
        mixture = _as_fit(other, _scale(x[~held]), features, **rest)
        own[held] = OodTest(mixture).distance({k: v[held] for k, v in stats.items()})
    rest["quantiles"] = np.quantile(own, np.linspace(0, 1, 101)).tolist()
    return _as_fit(best, _scale(x), features, **rest)


def split_rows(
    data: Dataset, manifest: Manifest, test_fraction: float, val_fraction: float
) -> tuple[np.ndarray, np.ndarray]:
    """The (training, validation) rows of a model's split, made again from its seed; DataError when the fractions
    given do not make its recorded held-out rows (the split cannot be recovered, so no row is trusted as never
    trained on)."""
    split = manifest.training.split
    labels = data.labels if split.stratified else None
    remade = split_dataset(labels, len(data), test_fraction, val_fraction, split.seed, data.official_test)
    if remade.test.tolist() != split.test_indices or len(remade.validation) != split.validation_size:
        raise DataError(
            f"{manifest.name}: --test-fraction {test_fraction} and --val-fraction {val_fraction} with seed "
            f"{split.seed} do not make the split the manifest records; give the fractions it was trained with "
            "(the split of a run with --limit cannot be made again)"
        )
    return remade.train, remade.validation


def fit_pixel_model(folder: Path, data: Dataset, training: np.ndarray) -> tuple[PixelModel, PixelsFile]:
    """Count the pixel model on (up to MAX_PIXEL_IMAGES of) the training rows and write it into `folder`."""
    rows = np.sort(training)
    if len(rows) > MAX_PIXEL_IMAGES:
        rows = np.sort(np.random.default_rng(OOD_SEED).choice(rows, MAX_PIXEL_IMAGES, replace=False))
    model = fit_pixels(
        (data.images[rows[i : i + 2000]].astype(np.float32) / 255.0 for i in range(0, len(rows), 2000)), BINS
    )
    path = write_pixels(Path(folder) / PIXELS_FILE, model)
    return model, PixelsFile(path=PIXELS_FILE, sha256=sha256_file(path), bins=BINS, fitted_on=len(rows))


def fit_ood(
    folder: Path,
    manifest: Manifest,
    data: Dataset,
    training: np.ndarray,
    validation: np.ndarray,
    iw_samples: int | None,
    log: Callable[[str], None] = print,
) -> Metrics:
    """The manifest's metrics with the test fitted on validation images (its pixel model counted on `training` rows,
    written into `folder`) and, for a conditional model, its label-free figures on the held-out images (mean
    -log p(x) over the labels with `iw_samples` draws, accuracy of p(y|x)); `iw_samples=None` keeps the recorded
    label-free figures."""
    pair = OnnxPair(folder)
    m = manifest
    rows = fit_rows(validation, m.training.split.seed)
    kw = dict(
        stochastic=m.stochastic,
        num_classes=len(m.labels) if m.labels and m.kind == "cvae" else None,
        likelihood=m.likelihood,
        sigma=m.gaussian_sigma,
    )
    pixels, pixels_file = fit_pixel_model(folder, data, training)
    log(f"out-of-distribution test: statistics of {len(rows)} validation images ...")
    x_fit = data.images[rows].astype(np.float32) / 255.0
    stats = statistics(pair, x_fit, pixels=pixels, **kw)  # type: ignore[arg-type]
    test = fit(stats, m.stochastic, rows, m.likelihood == "bernoulli", "validation split", pixels_file)
    update: dict = {"ood": test}
    if kw["num_classes"] and iw_samples is not None:
        held = np.asarray(m.training.split.test_indices)
        log(f"label-free -log p(x) and p(y|x) of {len(held)} held-out images, K={iw_samples} per label ...")
        x = data.images[held].astype(np.float32) / 255.0
        s = statistics(pair, x, k=iw_samples, seed=EVAL_SEED, **kw)  # type: ignore[arg-type]
        truth = data.known_labels()[0][held]
        update["marginal_nll"] = float(s["nll"].mean())
        update["label_accuracy"] = float((s["label_log_probs"].argmax(1) == truth).mean())
        quantiles = dict(m.metrics.score_quantiles or {})
        quantiles["marginal_nll"] = np.quantile(s["nll"], np.linspace(0, 1, 101)).tolist()
        update["score_quantiles"] = quantiles
    return m.metrics.model_copy(update=update)


def with_ood_figures(measured: Metrics, recorded: Metrics) -> Metrics:
    """`evaluate`'s figures with those `fit-ood` wrote kept from the manifest (evaluate does not measure them)."""
    quantiles = dict(measured.score_quantiles or {})
    if recorded.score_quantiles and "marginal_nll" in recorded.score_quantiles:
        quantiles["marginal_nll"] = recorded.score_quantiles["marginal_nll"]
    kept = {"ood": recorded.ood, "marginal_nll": recorded.marginal_nll, "label_accuracy": recorded.label_accuracy}
    return measured.model_copy(update={**kept, "score_quantiles": quantiles or None})

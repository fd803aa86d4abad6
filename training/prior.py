"""Fitted priors: a Gaussian mixture over where the encoder puts images, per class for a conditional model.

A VAE's aggregate posterior is not N(0, I): decoding z drawn from a mixture fitted to where the encoder really puts
images gives cleaner samples, and lets an `ae` (which has no prior at all) sample. The points are the posterior means
(an `ae`'s codes) of the dataset's non-held-out rows (the same rows the judging classifier learns from; never a
held-out row), as in Ghosh et al. 2020's ex-post density estimation. Fitting to a few draws from q(z|x) per image
instead (the aggregate posterior is the mixture of the q's) was tried and measured worse on every shipped model
(Frechet distance at 4,000 samples, 5 seeds: the 32-d vae 25.1 -> 27.4, cvae 13.1 -> 14.5, beta-vae 67.6 -> 82.9),
so it was removed. The covariance type (full or tied) and the number of components are chosen by held-out
likelihood, cross-validated over FOLDS folds: one 80/20 split had scored 16 and 32 components of the 16-d mnist-vae's
means 0.06 nats per point apart, well inside how much a score moves from one fold to another (0.15-0.2 nats), so
its choice was a coin toss.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from vaeformat.files import sha256_file
from vaeformat.manifest import PriorFile
from vaeformat.prior import PRIOR_FILE, FittedPrior, write_prior

from .data import Dataset
from .graphs import OnnxPair

CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # components tried per class, in increasing order
COVARIANCES = ("full", "tied")  # one covariance per component, or one shared by all of them
PATIENCE = 2  # stop adding components once this many larger candidates in a row scored below the best so far
PRIOR_SEED = 0
FOLDS = 5  # each candidate is scored on every fifth of the points by a mixture fitted to the other four
MAX_FIT_ROWS = 12000  # a seeded subset beyond this: the choice is stable long before, and EM cost grows with rows


def fit_mixture(
    points: np.ndarray, seed: int = PRIOR_SEED, candidates=CANDIDATES, covariances=COVARIANCES
) -> GaussianMixture:
    """The mixture of `points` [N, D] whose covariance type and component count give the best held-out likelihood.

    A candidate's score is its mean log-likelihood per point over FOLDS seeded folds, each fold scored by the
    candidate fitted to the other folds; the winner is refitted on all the points.
    Candidates are tried in increasing order and the search stops after PATIENCE in a row that do not beat the best.
    Tied covariances are returned as full ones (one copy per component), so every fit has `covariances_` [K, D, D].
    """
    if len(points) < 4:  # too few to hold any out and still fit: one component (a class may be this small)
        # sklearn needs two rows; one point twice is the same fit, that point with covariance reg_covar.
        return _fit(np.repeat(points, 2, axis=0) if len(points) == 1 else points, 1, "full", seed)
    folds = np.random.default_rng(seed).permutation(len(points)) % min(FOLDS, len(points))  # [N]: each point's fold
    smallest_fit = len(points) - np.bincount(folds).max()
    scored = []
    for covariance in covariances:
        best, worse = -np.inf, 0
        for k in candidates:
            if k > smallest_fit // 2 or worse >= PATIENCE:  # at least two points per component; past the peak
                break
            score = float(
                np.mean(
                    [_fit(points[folds != f], k, covariance, seed).score(points[folds == f]) for f in np.unique(folds)]
                )
            )
            scored.append((score, -k, covariance))
            best, worse = (score, 0) if score > best else (best, worse + 1)
    _, minus_k, covariance = max(scored)  # ties go to fewer components
    best = _fit(points, -minus_k, covariance, seed)
    if covariance == "tied":
        best.covariances_ = np.tile(best.covariances_, (best.n_components, 1, 1))
    return best


def _fit(points: np.ndarray, k: int, covariance: str, seed: int) -> GaussianMixture:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mixture = GaussianMixture(k, covariance_type=covariance, reg_covar=1e-5, max_iter=200, random_state=seed)
        return mixture.fit(points)


def to_prior(mixtures: list[GaussianMixture]) -> FittedPrior:
    """One mixture per class -> the padded arrays of vaeformat/prior.py (unused components weigh 0)."""
    k = max(g.n_components for g in mixtures)
    d = mixtures[0].means_.shape[1]
    weights = np.zeros((len(mixtures), k))
    means = np.zeros((len(mixtures), k, d))
    scales = np.tile(np.eye(d), (len(mixtures), k, 1, 1))
    for c, g in enumerate(mixtures):
        n = g.n_components
        weights[c, :n] = g.weights_ / g.weights_.sum()
        means[c, :n] = g.means_
        scales[c, :n] = np.linalg.cholesky(g.covariances_)
    return FittedPrior(weights, means, scales)


def fit_prior(
    pair: OnnxPair, data: Dataset, test_indices: list[int], num_classes: int | None, log: Callable[[str], None] = print
) -> tuple[FittedPrior, int, str]:
    """Encode the non-held-out rows and fit a mixture (per class when `num_classes`) to their posterior means (an
    `ae`'s codes); returns the prior, the number of images and what the points were."""
    rows = np.setdiff1d(np.arange(len(data)), np.asarray(test_indices))
    if len(rows) > MAX_FIT_ROWS:
        rows = np.sort(np.random.default_rng(PRIOR_SEED).choice(rows, MAX_FIT_ROWS, replace=False))
    x = data.images[rows].astype(np.float32) / 255.0  # [N, C, H, W]
    labels = data.known_labels()[0][rows].astype(np.int64) if num_classes else None
    codes = pair.encode(x, labels)
    mu = codes["mu"].astype(np.float64)  # [N, D]
    what = "codes" if codes.get("logvar") is None else "posterior means"
    groups = [mu] if labels is None or num_classes is None else [mu[labels == c] for c in range(num_classes)]
    mixtures = [fit_mixture(g) for g in groups]
    prior = to_prior(mixtures)
    log(
        f"fitted prior: {prior.components()} component(s) per class, chosen by held-out likelihood, on {what} of "
        f"{len(rows)} images"
    )
    return prior, len(rows), what


def save_prior(folder: Path, prior: FittedPrior, fitted_on: int, points: str = "codes") -> PriorFile:
    """Write `folder/prior.npz` and return the manifest entry for it (`points`: what the mixture was fitted to)."""
    path = write_prior(Path(folder) / PRIOR_FILE, prior)
    return PriorFile(
        path=PRIOR_FILE,
        sha256=sha256_file(path),
        components=prior.components(),
        fitted_on=fitted_on,
        selection=f"held-out likelihood, {FOLDS}-fold cross-validated over the images; fitted to {points}",
    )


def fit_and_save(
    folder: Path,
    data: Dataset,
    test_indices: list[int],
    num_classes: int | None,
    latent_dim: int,
    log: Callable[[str], None] = print,
) -> PriorFile:
    """Fit the prior of the exported model in `folder` and write it there (the manifest is the caller's to write)."""
    prior, fitted_on, points = fit_prior(OnnxPair(folder), data, test_indices, num_classes, log)
    prior.check(latent_dim, num_classes or 1)
    return save_prior(folder, prior, fitted_on, points)

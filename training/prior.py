"""Fitted priors: a Gaussian mixture over where the encoder puts images, per class for a conditional model.

A VAE's aggregate posterior is not N(0, I): decoding z drawn from a mixture fitted to where the encoder really puts
images gives cleaner samples, and lets an `ae` (which has no prior at all) sample. The points are the posterior means
(an `ae`'s codes) of the dataset's non-held-out rows (the same rows the judging classifier learns from; never a
held-out row), as in Ghosh et al. 2020's ex-post density estimation. Fitting to a few draws from q(z|x) per image
instead (the aggregate posterior is the mixture of the q's) was measured and is worse on every shipped model (Frechet
distance at 4,000 samples, 5 seeds: vae 25.1 -> 27.4, cvae 13.1 -> 14.5, beta-vae 67.6 -> 82.9), so DRAWS is 0; the
option stays for models where it helps. The covariance type (full or tied) and the number of components are chosen
by held-out likelihood, with whole images held out (with draws, an image's points are never on both sides).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from service.manifest import PriorFile, sha256_file
from service.prior import PRIOR_FILE, FittedPrior, write_prior

from .data import Dataset
from .graphs import OnnxPair

CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)  # components tried per class, in increasing order
COVARIANCES = ("full", "tied")  # one covariance per component, or one shared by all of them
PATIENCE = 2  # stop adding components once this many larger candidates in a row scored below the best so far
PRIOR_SEED = 0
HELD_OUT = 0.2  # share of the images whose points score each candidate
DRAWS = 0  # q(z|x) draws per image for a model with a posterior; 0 fits its posterior means (measured better)
MAX_FIT_ROWS = 12000  # fitted points (images x draws) at most (EM cost grows with them): fewer draws, then fewer images


def _mixture(k: int, covariance: str, seed: int) -> GaussianMixture:
    return GaussianMixture(k, covariance_type=covariance, reg_covar=1e-5, max_iter=200, random_state=seed)


def fit_mixture(points: np.ndarray, seed: int = PRIOR_SEED, candidates=CANDIDATES,
                covariances=COVARIANCES, groups: np.ndarray | None = None) -> GaussianMixture:
    """The mixture of `points` [N, D] whose covariance type and component count give the best held-out likelihood.

    Each candidate is fitted on a seeded 80% of the groups (`groups` [N]: the image each point came from; by default
    every point is its own) and scored on the points of the other 20%; the winner is refitted on all the points.
    Candidates are tried in increasing order and the search stops after PATIENCE in a row that do not beat the best.
    Tied covariances are returned as full ones (one copy per component), so every fit has `covariances_` [K, D, D].
    """
    ids = np.arange(len(points)) if groups is None else np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(ids))
    cut = len(ids) - max(1, int(HELD_OUT * len(ids)))
    if groups is None:
        fit, held_out = points[order[:cut]], points[order[cut:]]
    else:
        out = np.isin(groups, ids[order[cut:]])
        fit, held_out = points[~out], points[out]
    scored = []
    for covariance in covariances:
        best, worse = -np.inf, 0
        for k in candidates:
            if k > len(fit) // 2 or worse >= PATIENCE:  # at least two points per component; past the peak
                break
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                score = _mixture(k, covariance, seed).fit(fit).score(held_out)
            scored.append((score, -k, covariance))
            best, worse = (score, 0) if score > best else (best, worse + 1)
    _, minus_k, covariance = max(scored)  # ties go to fewer components
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        best = _mixture(-minus_k, covariance, seed).fit(points)
    if covariance == "tied":
        best.covariances_ = np.tile(best.covariances_, (best.n_components, 1, 1))
    return best


def to_prior(mixtures: list[GaussianMixture]) -> FittedPrior:
    """One mixture per class -> the padded arrays of service/prior.py (unused components weigh 0)."""
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


def posterior_draws(mu: np.ndarray, logvar: np.ndarray, draws: int, seed: int = PRIOR_SEED) -> np.ndarray:
    """`draws` seeded z ~ q(z|x) per image: mu, logvar [N, D] -> [draws, N, D]."""
    eps = np.random.default_rng(seed).standard_normal((draws, *mu.shape))
    return mu + np.exp(0.5 * logvar) * eps


def fit_prior(pair: OnnxPair, data: Dataset, test_indices: list[int], num_classes: int | None,
              log: Callable[[str], None] = print) -> tuple[FittedPrior, int, str]:
    """Encode the non-held-out rows and fit a mixture (per class when `num_classes`) to their posterior means (an
    `ae`'s codes; DRAWS draws from q(z|x) per image when DRAWS > 0); returns the prior, the number of images and
    what the points were."""
    rows = np.setdiff1d(np.arange(len(data)), np.asarray(test_indices))
    if len(rows) > MAX_FIT_ROWS:
        rows = np.sort(np.random.default_rng(PRIOR_SEED).choice(rows, MAX_FIT_ROWS, replace=False))
    x = data.images[rows].astype(np.float32) / 255.0  # [N, C, H, W]
    labels = data.labels[rows].astype(np.int64) if num_classes else None
    codes = pair.encode(x, labels)
    mu = codes["mu"].astype(np.float64)  # [N, D]
    if codes.get("logvar") is None or DRAWS == 0:  # an ae: its codes are all there is
        points, what = mu[None], "codes" if codes.get("logvar") is None else "posterior means"
    else:
        draws = max(1, min(DRAWS, MAX_FIT_ROWS // len(rows)))
        points = posterior_draws(mu, codes["logvar"].astype(np.float64), draws)  # [draws, N, D]
        what = f"{draws} draw(s) from q(z|x) per image"
    image = np.broadcast_to(np.arange(len(rows)), points.shape[:2])  # [draws, N]: which image each point is of
    classes = [np.ones(len(rows), bool)] if labels is None else [labels == c for c in range(num_classes)]
    mixtures = [fit_mixture(points[:, c].reshape(-1, mu.shape[1]), groups=image[:, c].reshape(-1)) for c in classes]
    prior = to_prior(mixtures)
    log(f"fitted prior: {prior.components()} component(s) per class, chosen by held-out likelihood, on {what} of "
        f"{len(rows)} images")
    return prior, len(rows), what


def save_prior(folder: Path, prior: FittedPrior, fitted_on: int, points: str = "codes") -> PriorFile:
    """Write `folder/prior.npz` and return the manifest entry for it (`points`: what the mixture was fitted to)."""
    path = write_prior(Path(folder) / PRIOR_FILE, prior)
    return PriorFile(path=PRIOR_FILE, sha256=sha256_file(path), components=prior.components(), fitted_on=fitted_on,
                     selection=f"held-out likelihood over {HELD_OUT:.0%} of the images; fitted to {points}")


def fit_and_save(folder: Path, data: Dataset, test_indices: list[int], num_classes: int | None, latent_dim: int,
                 log: Callable[[str], None] = print) -> PriorFile:
    """Fit the prior of the exported model in `folder` and write it there (the manifest is the caller's to write)."""
    prior, fitted_on, points = fit_prior(OnnxPair(folder), data, test_indices, num_classes, log)
    prior.check(latent_dim, num_classes or 1)
    return save_prior(folder, prior, fitted_on, points)

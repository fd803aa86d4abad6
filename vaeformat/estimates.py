"""What /score estimates from a model's importance weights, and its out-of-distribution test, in numpy.

Training fits the test with these functions and the service scores with them, so the stored figures describe
exactly what is served.

- `log_bernoulli`, `log_gaussian`, `log_standard_normal`, `log_normal`: the densities the weights are made of, in
  float64; `binarize`: a Bernoulli model's one binarization of a grey image.
- `from_weights`: log importance weights [N, C, K] (K draws of z for each of C labels; C = 1 for an unconditional
  model) -> -log p(x), the weights' effective sample size and, for a conditional model, p(y|x). With a uniform
  p(y) the estimate is p(x) = sum_y p(y) (1/K) sum_k w_yk, each label's K draws from q(z|x, y).
- `complexity`: the image's compressed length in nats (zlib, level 9, 8-bit pixels): the number of nats a generic
  compressor needs for it.
- `image_statistics`: what the test measures of the image alone: `complexity` and, when the test has a pixel model
  (vaeformat/pixels.py), `pixel_nll`, its -log likelihood under each pixel's histogram over training images.
- `OodTest`: the image's statistics (-log p(x), KL, reconstruction, compressed length, pixel -log likelihood; an ae:
  squared error in place of the first three) against those of in-distribution images never trained on, as their
  -log density under a Gaussian mixture fitted to those images' statistics. An image can be unlike the training
  data by being too unlikely, or by being *more* likely than the training images are (a simple image under a model
  of complex ones), or by a likelihood its compressed length does not explain, or by putting its pixels where the
  training images never do; one density covers every direction, where a threshold on -log p(x) alone looks one way
  only.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .manifest import OodFit
from .pixels import PixelModel

LOG_2PI = math.log(2 * math.pi)


def log_bernoulli(logits: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log p(x|z) for binary x, exact from logits: [..., C, H, W] -> [...]."""
    log_p = -(np.logaddexp(0.0, -logits) * x + np.logaddexp(0.0, logits) * (1.0 - x))
    return log_p.reshape(*log_p.shape[:-3], -1).sum(-1, dtype=np.float64)


def log_gaussian(mean: np.ndarray, x: np.ndarray, sigma: float) -> np.ndarray:
    """log N(x; mean, sigma^2 I): [..., C, H, W] -> [...] (x may broadcast against mean)."""
    sq = (((x - mean) / sigma) ** 2).reshape(*mean.shape[:-3], -1).sum(-1, dtype=np.float64)
    pixels = x.shape[-3] * x.shape[-2] * x.shape[-1]
    return -0.5 * sq - pixels * (math.log(sigma) + 0.5 * LOG_2PI)


def log_standard_normal(z: np.ndarray) -> np.ndarray:
    """log N(z; 0, I): [..., D] -> [...]."""
    return -0.5 * (LOG_2PI + z.astype(np.float64) ** 2).sum(-1)


def log_normal(z: np.ndarray, mu: np.ndarray, logvar: np.ndarray) -> np.ndarray:
    """log N(z; mu, diag exp(logvar)): [..., D] -> [...]."""
    z, mu, logvar = (a.astype(np.float64) for a in (z, mu, logvar))
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 / np.exp(logvar)).sum(-1)


def binarize(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One binarization: each pixel on with probability its grey value (what the evaluation does): [N, C, H, W]."""
    return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)


@dataclass(frozen=True)
class Estimate:
    nll: np.ndarray  # [N] -log p(x)
    ess: np.ndarray  # [N] effective sample size of the N's C x K weights, in [1, C x K]
    label_log_probs: np.ndarray | None  # [N, C] log p(y|x); None for an unconditional model
    label_nll: np.ndarray  # [N, C] -log p(x|y) per label (the one column of an unconditional model)


def log_mean_exp(a: np.ndarray, axis: int) -> np.ndarray:
    top = a.max(axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.exp(a - top).mean(axis))


def from_weights(log_w: np.ndarray) -> Estimate:
    """log_w [N, C, K] = log p(x|z) + log p(z) - log q(z|x, y) per label y and draw k; p(y) uniform."""
    n, c, _ = log_w.shape
    log_w = log_w.astype(np.float64)
    label_log_px = log_mean_exp(log_w, 2)  # [N, C] log p(x|y)
    log_px = log_mean_exp(label_log_px, 1)  # [N]: mean over labels = the sum weighted by p(y) = 1/C
    flat = log_w.reshape(n, -1)
    w = np.exp(flat - flat.max(1, keepdims=True))
    ess = w.sum(1) ** 2 / (w**2).sum(1)
    posterior = label_log_px - log_px[:, None] - math.log(c) if c > 1 else None
    return Estimate(-log_px, ess, posterior, -label_log_px)


def mixed(values: np.ndarray, estimate: Estimate) -> np.ndarray:
    """A per-label statistic [N, C] as one figure per image: its mean under p(y|x) (the one column when C = 1)."""
    if estimate.label_log_probs is None:
        return values[:, 0]
    return (np.exp(estimate.label_log_probs) * values).sum(1)


def complexity(images: np.ndarray) -> np.ndarray:
    """Compressed length in nats of each image [N, C, H, W] in [0, 1], as 8-bit pixels (zlib, level 9).

    The image as sent, not a Bernoulli model's binarization of it: a binarized grey image is nearly incompressible
    whatever it shows, so its length would sit at the same ceiling for grey clothes and for noise."""
    pixels = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
    sizes = [len(zlib.compress(image.tobytes(), 9)) for image in pixels]
    return np.asarray(sizes, dtype=np.float64) * (8 * math.log(2))


def image_statistics(images: np.ndarray, pixels: PixelModel | None) -> dict[str, np.ndarray]:
    """The statistics of images [N, C, H, W] in [0, 1] that need no network: complexity, and pixel_nll with `pixels`."""
    stats = {"complexity": complexity(images)}
    if pixels is not None:
        stats["pixel_nll"] = pixels.nll(images)
    return stats


def columns(stats: dict[str, np.ndarray], features: Sequence[str]) -> np.ndarray:
    """The test's feature matrix [N, F] from named statistics [N] each."""
    return np.stack([np.asarray(stats[f], dtype=np.float64) for f in features], 1)


class OodTest:
    """The fitted test of a manifest's `metrics.ood`: statistics -> -log density under the mixture, and its
    percentile among the fit images' own."""

    def __init__(self, fit: OodFit) -> None:
        self.fit = fit
        self.log_weights = np.log(np.maximum(np.asarray(fit.weights, dtype=np.float64), 1e-300))  # [M]
        self.means = np.asarray(fit.means, dtype=np.float64)  # [M, F]
        self.precisions = np.asarray(fit.precisions, dtype=np.float64)  # [M, F, F]
        f = self.means.shape[1]
        # log N(x; mean, P^-1) = 0.5 log det P - F/2 log 2 pi - 0.5 (x - mean)' P (x - mean)
        self.log_norms = 0.5 * np.linalg.slogdet(self.precisions)[1] - 0.5 * f * math.log(2 * math.pi)
        self.quantiles = np.asarray(fit.quantiles, dtype=np.float64)

    def distance(self, stats: dict[str, np.ndarray]) -> np.ndarray:
        """-log density of each image's statistics [N]; infinite where they are not finite."""
        d = columns(stats, self.fit.features)[:, None, :] - self.means[None]  # [N, M, F]
        with np.errstate(over="ignore", invalid="ignore"):
            squared = np.einsum("nmf,mfg,nmg->nm", d, self.precisions, d)
            log_p = self.log_weights + self.log_norms - 0.5 * squared  # [N, M]
            top = log_p.max(1)
            out = -(top + np.log(np.exp(log_p - top[:, None]).sum(1)))
        return np.where(np.isfinite(out), out, np.inf)

    def percentile(self, distance: np.ndarray) -> np.ndarray:
        """Where each value falls among the fit images' (0..100); beyond the largest is 100."""
        return np.interp(distance, self.quantiles, np.linspace(0.0, 100.0, len(self.quantiles)))

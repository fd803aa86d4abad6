"""POST /score's one model call: how well a model explains each image, and where that falls among held-out images.

For a model with q(z|x) (vae, cvae) the score is the importance-weighted estimate of -log p(x) in nats,

    nll = -log (1/K) sum_k p(x|z_k) N(z_k; 0, I) / q(z_k|x),   z_k ~ q(z|x),

computed exactly from the decoder's `logits` for a Bernoulli model and from `gaussian_sigma` for a Gaussian one,
with the ELBO and its two terms from the same draws (as the manifest's metrics are measured). A Bernoulli model
describes binary pixels, so a grey image is scored as the evaluation scores held-out digits: the encoder sees the
grey image, and the likelihood is that of one binarization (each pixel on with probability its grey value) drawn
from the request's `seed` before the K draws of z; an image that is already black and white is unaffected. An `ae`
has no likelihood: it is scored by its squared reconstruction error. The percentile places the score among the
held-out images' (the manifest's `metrics.score_quantiles`, stored at export).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import CapabilityMissing
from ..models.model import Encoding, ServedModel

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Scores:
    """Per image [N]; the likelihood terms are None for a model without q(z|x) (an ae)."""

    squared_error: np.ndarray
    percentile: np.ndarray | None  # None when the manifest has no held-out quantiles
    anomalous: np.ndarray | None
    nll: np.ndarray | None = None
    elbo: np.ndarray | None = None  # a lower bound on log p(x); -elbo is the manifest's negative_elbo
    reconstruction: np.ndarray | None = None  # E_q[-log p(x|z)]
    kl: np.ndarray | None = None  # KL(q(z|x) || N(0, I)), closed form

    def rows(self) -> list[dict[str, float | bool | None]]:
        """One dict per image: the fields this model scores (percentile, anomalous: null without quantiles)."""
        names = ("nll", "elbo", "reconstruction", "kl", "squared_error", "percentile", "anomalous")
        columns = {
            k: getattr(self, k) for k in names if getattr(self, k) is not None or k in ("percentile", "anomalous")
        }
        return [
            {k: None if v is None else bool(v[i]) if k == "anomalous" else float(v[i]) for k, v in columns.items()}
            for i in range(len(self.squared_error))
        ]


def log_bernoulli(logits: np.ndarray, x: np.ndarray) -> np.ndarray:
    """log p(x|z) for binary x, exact from logits: [..., C, H, W] -> [...]."""
    log_p = -(np.logaddexp(0.0, -logits) * x + np.logaddexp(0.0, logits) * (1.0 - x))
    return log_p.reshape(*log_p.shape[:-3], -1).sum(-1, dtype=np.float64)


def log_gaussian(mean: np.ndarray, x: np.ndarray, sigma: float) -> np.ndarray:
    """log N(x; mean, sigma^2 I): [..., C, H, W] -> [...]."""
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


def importance_weighted(log_px_z: np.ndarray, log_pz: np.ndarray, log_qz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nll, elbo) per image from K draws each: [N, K] -> [N], [N]; nll = -log mean_k w_k."""
    log_w = log_px_z + log_pz - log_qz
    top = log_w.max(1, keepdims=True)
    log_mean_w = top[:, 0] + np.log(np.exp(log_w - top).mean(1))
    return -log_mean_w, log_w.mean(1)


def percentiles(values: np.ndarray, quantiles: list[float]) -> np.ndarray:
    """Where each value falls among held-out scores given as 101 quantiles (0..100 %): [N] -> [N] in [0, 100]."""
    q = np.asarray(quantiles, dtype=np.float64)
    return np.interp(values, q, np.linspace(0.0, 100.0, len(q)))


def binarize(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One binarization: each pixel on with probability its grey value (what the evaluation does): [N, C, H, W]."""
    return (rng.random(images.shape, dtype=np.float32) < images).astype(np.float32)


async def score(
    model: ServedModel,
    images: np.ndarray,
    labels: np.ndarray | None,
    k: int,
    rng: np.random.Generator,
    threshold: float,
) -> Scores:
    """Score images [N, C, H, W] (labels [N] from `labels.resolve` for a conditional model) with k draws each."""
    m = model.manifest
    bernoulli = m.likelihood == "bernoulli"
    if model.has_posterior and bernoulli and model.manifest.files.decoder.output("logits") is None:
        raise CapabilityMissing(
            f"model {model.name!r} has a Bernoulli decoder without a 'logits' output, so -log p(x) cannot be "
            "computed exactly; re-export it with training/export.py, which adds the output"
        )
    n = len(images)
    encoding: Encoding = await model.encode(images, labels)
    feeds: dict[str, np.ndarray] = {"z": encoding.mu}
    if model.decoder_takes_label:
        assert labels is not None
        feeds["label"] = labels
    (recon,) = await model.decoder(["image"], feeds)  # at z = mu, as the evaluation's squared error
    squared_error = ((np.clip(recon, 0.0, 1.0) - images) ** 2).reshape(n, -1).sum(1, dtype=np.float64)
    quantiles = m.metrics.score_quantiles or {}
    if not model.has_posterior:
        pct = percentiles(squared_error, quantiles["squared_error"]) if "squared_error" in quantiles else None
        return Scores(squared_error, pct, None if pct is None else pct > threshold)

    assert encoding.logvar is not None
    target = binarize(images, rng) if bernoulli else images  # [N, C, H, W]
    z = model.posterior_draws(encoding, k, rng)  # [N, K, D]
    d = z.shape[-1]
    feeds = {"z": z.reshape(n * k, d)}
    if model.decoder_takes_label:
        assert labels is not None
        feeds["label"] = np.repeat(labels, k)
    (decoded,) = await model.decoder(["logits" if bernoulli else "image"], feeds)
    decoded = decoded.reshape(n, k, *decoded.shape[1:])  # [N, K, C, H, W]
    if bernoulli:
        log_px_z = log_bernoulli(decoded, target[:, None])
    else:
        assert m.gaussian_sigma is not None
        log_px_z = log_gaussian(decoded, target[:, None], m.gaussian_sigma)  # [N, K]
    log_qz = log_normal(z, encoding.mu[:, None], encoding.logvar[:, None])
    nll, elbo = importance_weighted(log_px_z, log_standard_normal(z), log_qz)
    mu, logvar = encoding.mu.astype(np.float64), encoding.logvar.astype(np.float64)
    kl = 0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar).sum(1)
    pct = percentiles(nll, quantiles["nll"]) if "nll" in quantiles else None
    return Scores(
        squared_error,
        pct,
        None if pct is None else pct > threshold,
        nll=nll,
        elbo=elbo,
        reconstruction=-log_px_z.mean(1),
        kl=kl,
    )

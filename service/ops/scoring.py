"""POST /score's model calls: how well a model explains each image, where that falls among held-out images, and
whether the image is like the training data at all.

For a model with q(z|x) (vae, cvae) the score is the importance-weighted estimate of -log p(x) in nats,

    nll = -log (1/K) sum_k p(x|z_k) N(z_k; 0, I) / q(z_k|x),   z_k ~ q(z|x),

computed exactly from the decoder's `logits` for a Bernoulli model and from `gaussian_sigma` for a Gaussian one,
with the ELBO and its two terms from the same draws (as the manifest's metrics are measured), and the weights'
effective sample size. A conditional model draws K for each label y from q(z|x, y): with a label its `nll` is
-log p(x|y), without one -log p(x) over the labels (uniform p(y)), and p(y|x) comes back either way
(vaeformat/estimates.py combines them). A Bernoulli model describes binary pixels, so a grey image is scored as the
evaluation scores held-out digits: the encoder sees the grey image, and the likelihood is that of one binarization
(each pixel on with probability its grey value) drawn from the request's `seed` before the K draws of z; an image
that is already black and white is unaffected. An `ae` has no likelihood: it is scored by its squared
reconstruction error. The percentile places the score among the held-out images' (the manifest's
`metrics.score_quantiles`, stored at export); `anomalous` comes from the manifest's out-of-distribution test
(`metrics.ood`) when it has one, else from that percentile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from vaeformat.estimates import (
    binarize,
    from_weights,
    image_statistics,
    log_bernoulli,
    log_gaussian,
    log_normal,
    log_standard_normal,
    mixed,
)

from ..errors import CapabilityMissing
from ..models.model import Encoding, ServedModel
from ..offload import cpu_bound


@dataclass(frozen=True)
class Scores:
    """Per image [N]; the likelihood terms are None for a model without q(z|x) (an ae)."""

    squared_error: np.ndarray
    percentile: np.ndarray | None  # of the nll (an ae: squared error) among held-out images; None without quantiles
    anomalous: np.ndarray | None
    nll: np.ndarray | None = None
    elbo: np.ndarray | None = None  # a lower bound on log p(x); -elbo is the manifest's negative_elbo
    reconstruction: np.ndarray | None = None  # E_q[-log p(x|z)]
    kl: np.ndarray | None = None  # KL(q(z|x) || N(0, I)), closed form
    ess: np.ndarray | None = None  # effective sample size of the importance weights
    complexity: np.ndarray | None = None  # compressed length of the image in nats
    pixel_nll: np.ndarray | None = None  # -log likelihood under the per-pixel histograms of training images
    ood: np.ndarray | None = None  # -log density of the image's statistics under the in-distribution mixture
    ood_percentile: np.ndarray | None = None
    label_probabilities: np.ndarray | None = None  # [N, C] p(y|x) of a conditional model
    class_names: list[str] | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One dict per image: the fields this model scores (percentile, anomalous: null without quantiles)."""
        names = (
            "nll",
            "elbo",
            "reconstruction",
            "kl",
            "ess",
            "squared_error",
            "complexity",
            "pixel_nll",
            "percentile",
            "ood",
            "ood_percentile",
            "anomalous",
        )
        always = ("percentile", "anomalous")
        columns = {k: getattr(self, k) for k in names if getattr(self, k) is not None or k in always}
        rows: list[dict[str, Any]] = [
            {k: None if v is None else bool(v[i]) if k == "anomalous" else _number(v[i]) for k, v in columns.items()}
            for i in range(len(self.squared_error))
        ]
        if self.label_probabilities is not None and self.class_names is not None:
            for row, probs in zip(rows, self.label_probabilities, strict=True):
                row["label_probabilities"] = {name: float(p) for name, p in zip(self.class_names, probs, strict=True)}
        return rows


def _number(v: float) -> float | None:
    """A float for JSON; an infinite distance (statistics beyond float range) is reported as null."""
    return float(v) if math.isfinite(v) else None


def percentiles(values: np.ndarray, quantiles: list[float]) -> np.ndarray:
    """Where each value falls among held-out scores given as 101 quantiles (0..100 %): [N] -> [N] in [0, 100]."""
    q = np.asarray(quantiles, dtype=np.float64)
    return np.interp(values, q, np.linspace(0.0, 100.0, len(q)))


def _ood(
    model: ServedModel, stats: dict[str, np.ndarray], threshold: float
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(-log density, its percentile, anomalous) from the manifest's fitted test; Nones when it has none."""
    test = model.ood_test
    if test is None:
        return None, None, None
    distance = test.distance(stats)
    pct = test.percentile(distance)
    return distance, pct, pct > threshold


async def score(
    model: ServedModel,
    images: np.ndarray,
    labels: np.ndarray | None,
    k: int,
    rng: np.random.Generator,
    threshold: float,
) -> Scores:
    """Score images [N, C, H, W] with k draws each (and each label's k draws, for a conditional model).

    `labels` [N] (a conditional model only, optional) picks the label whose -log p(x|y) is `nll`; without them a
    conditional model's `nll` is -log p(x) summed over its labels. Its label probabilities p(y|x) and the
    out-of-distribution test use every label either way.
    """
    m = model.manifest
    bernoulli = m.likelihood == "bernoulli"
    if model.has_posterior and bernoulli and model.manifest.files.decoder.output("logits") is None:
        raise CapabilityMissing(
            f"model {model.name!r} has a Bernoulli decoder without a 'logits' output, so -log p(x) cannot be "
            "computed exactly; re-export it with training/export.py, which adds the output"
        )
    n = len(images)
    stats = image_statistics(images, model.pixels)
    quantiles = m.metrics.score_quantiles or {}
    if not model.has_posterior:
        encoding: Encoding = await model.encode(images, labels)
        (recon,) = await model.decoder(["image"], {"z": encoding.mu})
        squared_error = ((np.clip(recon, 0.0, 1.0) - images) ** 2).reshape(n, -1).sum(1, dtype=np.float64)
        stats["squared_error"] = squared_error
        pct = percentiles(squared_error, quantiles["squared_error"]) if "squared_error" in quantiles else None
        ood, ood_pct, flagged = _ood(model, stats, threshold)
        if flagged is None and pct is not None:
            flagged = pct > threshold
        return Scores(
            squared_error,
            pct,
            flagged,
            complexity=stats["complexity"],
            pixel_nll=stats.get("pixel_nll"),
            ood=ood,
            ood_percentile=ood_pct,
        )

    target = binarize(images, rng) if bernoulli else images  # [N, C, H, W]; an ae scores the image as sent
    c = len(model.class_names) if model.conditional else 1
    every = np.tile(np.arange(c, dtype=np.int64), n) if model.conditional else None  # [N * C]: each image, each label
    encoding = await model.encode(np.repeat(images, c, axis=0), every)
    assert encoding.logvar is not None
    feeds: dict[str, np.ndarray] = {"z": encoding.mu}
    if model.decoder_takes_label:
        assert every is not None
        feeds["label"] = every
    (recon,) = await model.decoder(["image"], feeds)  # at z = mu, as the evaluation's squared error
    errors = ((np.clip(recon, 0.0, 1.0) - np.repeat(images, c, axis=0)) ** 2).reshape(n, c, -1).sum(2, np.float64)
    z = model.posterior_draws(encoding, k, rng)  # [N * C, K, D]
    d = z.shape[-1]
    feeds = {"z": z.reshape(n * c * k, d)}
    if model.decoder_takes_label:
        assert every is not None
        feeds["label"] = np.repeat(every, k)
    (decoded,) = await model.decoder(["logits" if bernoulli else "image"], feeds)
    # K draws per image and label make the arithmetic below as large as the decoder's output (16,384 rows of an
    # image at the limit): on a worker thread unless small, so that one request cannot stall the event loop.
    weighed = (model, target, encoding, z, decoded, errors, stats, labels, threshold)
    return await cpu_bound(_weigh, *weighed, pixels=decoded.size)


def _weigh(
    model: ServedModel,
    target: np.ndarray,
    encoding: Encoding,
    z: np.ndarray,
    decoded: np.ndarray,
    errors: np.ndarray,
    stats: dict[str, np.ndarray],
    labels: np.ndarray | None,
    threshold: float,
) -> Scores:
    """The scores from the K draws `z` [N * C, K, D] and what the decoder made of them."""
    m = model.manifest
    assert encoding.logvar is not None
    n, c, k = len(target), errors.shape[1], z.shape[1]
    quantiles = m.metrics.score_quantiles or {}
    decoded = decoded.reshape(n * c, k, *decoded.shape[1:])  # [N * C, K, C', H, W]
    repeated = np.repeat(target, c, axis=0)[:, None]
    if m.likelihood == "bernoulli":
        log_px_z = log_bernoulli(decoded, repeated)
    else:
        assert m.gaussian_sigma is not None
        log_px_z = log_gaussian(decoded, repeated, m.gaussian_sigma)  # [N * C, K]
    log_qz = log_normal(z, encoding.mu[:, None], encoding.logvar[:, None])
    log_w = (log_px_z + log_standard_normal(z) - log_qz).reshape(n, c, k)
    estimate = from_weights(log_w)
    mu, logvar = encoding.mu.astype(np.float64), encoding.logvar.astype(np.float64)
    kl = 0.5 * (mu**2 + np.exp(logvar) - 1.0 - logvar).sum(1).reshape(n, c)
    rec = -log_px_z.mean(1).reshape(n, c)
    elbo = log_w.mean(2)  # [N, C]
    stats.update(nll=estimate.nll, kl=mixed(kl, estimate), reconstruction=mixed(rec, estimate))
    ood, ood_pct, flagged = _ood(model, stats, threshold)
    # Rounding in the log-sum-exp can put a sure label a few ulps above 1: a probability stays within [0, 1].
    probs = None if estimate.label_log_probs is None else np.minimum(np.exp(estimate.label_log_probs), 1.0)
    if labels is not None:  # the terms of the label asked for
        pick = np.arange(n), labels
        nll, kl_out, rec_out, elbo_out, err = estimate.label_nll[pick], kl[pick], rec[pick], elbo[pick], errors[pick]
        key = "nll"
    else:
        nll, kl_out, rec_out, err = estimate.nll, stats["kl"], stats["reconstruction"], mixed(errors, estimate)
        # A bound on log p(x) with q(y|x) = p(y|x): E_q(y|x)[ELBO(x, y) + log p(y) - log q(y|x)].
        elbo_out = elbo[:, 0]
        if probs is not None and estimate.label_log_probs is not None:
            elbo_out = (probs * (elbo - math.log(c) - estimate.label_log_probs)).sum(1)
        key = "marginal_nll" if model.conditional else "nll"
    pct = percentiles(nll, quantiles[key]) if key in quantiles else None
    if flagged is None and pct is not None:
        flagged = pct > threshold
    return Scores(
        err,
        pct,
        flagged,
        nll=nll,
        elbo=elbo_out,
        reconstruction=rec_out,
        kl=kl_out,
        ess=estimate.ess,
        complexity=stats["complexity"],
        pixel_nll=stats.get("pixel_nll"),
        ood=ood,
        ood_percentile=ood_pct,
        label_probabilities=probs,
        class_names=model.class_names if probs is not None else None,
    )

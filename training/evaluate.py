"""Held-out evaluation of an exported model, run on its ONNX graphs (what ships), never on the training weights."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from service.manifest import Manifest, Metrics

from .classifier import frechet_distance, train_classifier
from .data import Dataset, load_dataset
from .graphs import OnnxPair
from .objectives import bernoulli_nll, gaussian_nll, importance_weighted_bound, kl_per_dim, log_normal, log_standard_normal

EVAL_SEED = 20240601  # one fixed binarization and one fixed set of noise draws, so figures are repeatable
ACTIVE_UNIT_THRESHOLD = 0.01
ROWS_PER_DECODE = 16384  # K x images decoded per onnxruntime call


@dataclass(frozen=True)
class EvalSpec:
    """What evaluation needs to know about a model; the manifest holds all of it."""

    dataset: str
    channels: int
    height: int
    width: int
    stochastic: bool
    conditional: bool
    num_classes: int | None
    likelihood: str
    gaussian_sigma: float | None
    test_indices: list[int]

    @classmethod
    def from_manifest(cls, m: Manifest) -> EvalSpec:
        return cls(m.training.dataset, m.image.channels, m.image.height, m.image.width, m.stochastic, m.conditional,
                   len(m.labels) if m.labels else None, m.likelihood, m.gaussian_sigma, m.training.split.test_indices)


def _nll(spec: EvalSpec, decoded: dict[str, np.ndarray], target: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) per row from decoder outputs: [..., C, H, W] -> [...]."""
    if spec.likelihood == "bernoulli":
        return bernoulli_nll(torch.from_numpy(decoded["logits"]), target)
    sigma = torch.tensor(math.log(spec.gaussian_sigma))
    return gaussian_nll(torch.from_numpy(decoded["image"]), target, sigma)


def _likelihood_terms(pair: OnnxPair, spec: EvalSpec, x: np.ndarray, target: np.ndarray, labels, mu, logvar,
                      k: int, rng: np.random.Generator) -> dict[str, float]:
    """Importance-weighted bound with k samples, and the ELBO, reconstruction and KL from the same draws."""
    n, d = mu.shape
    per = max(1, ROWS_PER_DECODE // k)
    iw, elbo, rec = [], [], []
    for start in range(0, n, per):
        sl = slice(start, min(n, start + per))
        b = sl.stop - sl.start
        m, lv = torch.from_numpy(mu[sl]), torch.from_numpy(logvar[sl])
        eps = torch.from_numpy(rng.standard_normal((k, b, d), dtype=np.float32))
        z = m + eps * (0.5 * lv).exp()  # [K, b, D]
        lab = None if labels is None else np.tile(labels[sl], k)
        decoded = pair.decode(z.reshape(k * b, d).numpy(), lab)
        decoded = {name: v.reshape(k, b, *v.shape[1:]) for name, v in decoded.items()}
        log_px_z = -_nll(spec, decoded, torch.from_numpy(target[sl]).expand(k, *target[sl].shape))  # [K, b]
        log_pz, log_qz = log_standard_normal(z), log_normal(z, m, lv)
        iw.append(importance_weighted_bound(log_px_z, log_pz, log_qz))
        elbo.append((log_px_z + log_pz - log_qz).mean(0))
        rec.append(-log_px_z.mean(0))
    kl = kl_per_dim(torch.from_numpy(mu), torch.from_numpy(logvar)).sum(1)
    return {"iw_bound": -torch.cat(iw).mean().item(), "negative_elbo": -torch.cat(elbo).mean().item(),
            "reconstruction": torch.cat(rec).mean().item(), "kl": kl.mean().item()}


def _generation_terms(pair: OnnxPair, spec: EvalSpec, data: Dataset, test: np.ndarray, latent_dim: int,
                      rng: np.random.Generator, log: Callable[[str], None],
                      device: torch.device | str) -> dict[str, float]:
    """Label agreement and Frechet distance of generated images, judged by a classifier trained without test rows."""
    others = np.setdiff1d(np.arange(len(data)), test)

    def floats(rows: np.ndarray) -> np.ndarray:  # [len(rows), C, H, W] in [0, 1]; a folder on disk reads just these
        return data.images[rows].astype(np.float32) / 255.0

    log(f"training the independent classifier on {len(others)} non-held-out images ...")
    clf = train_classifier(floats(others), data.labels[others], spec.num_classes, seed=EVAL_SEED % 1000, device=device)
    test_feats, test_pred = clf.features(floats(test))
    accuracy = float((test_pred == data.labels[test]).mean())
    # As many generated images per label as the held-out set has, so the two feature sets are comparable.
    want = data.labels[test]
    z = rng.standard_normal((len(want), latent_dim), dtype=np.float32)
    generated = pair.decode(z, want.astype(np.int64))["image"]
    gen_feats, gen_pred = clf.features(generated)
    # The floor: real non-held-out images with the same label counts, against the same held-out images.
    floor_rows = np.concatenate([rng.choice(others[data.labels[others] == c], (want == c).sum(), replace=False)
                                 for c in np.unique(want)])
    floor_feats, _ = clf.features(floats(floor_rows))
    return {"classifier_accuracy": accuracy, "label_agreement": float((gen_pred == want).mean()),
            "frechet_distance": frechet_distance(gen_feats, test_feats),
            "frechet_floor": frechet_distance(floor_feats, test_feats)}


def evaluate(folder: Path, spec: EvalSpec, iw_samples: int = 500, data: Dataset | None = None,
             log: Callable[[str], None] = print, device: torch.device | str = "cpu") -> Metrics:
    """Measure the exported graphs in `folder` on the held-out rows `spec.test_indices`.

    The graphs run in onnxruntime on the CPU (what ships); `device` is where the judging classifier trains.
    """
    if data is None:
        data = load_dataset(spec.dataset, size=spec.height, channels=spec.channels)
    pair = OnnxPair(folder)
    rng = np.random.default_rng(EVAL_SEED)
    test = np.asarray(spec.test_indices)
    x = data.images[test].astype(np.float32) / 255.0  # [N, C, H, W] grayscale/colour in [0, 1]
    labels = data.labels[test].astype(np.int64) if spec.conditional else None
    bernoulli = spec.likelihood == "bernoulli"
    # One fixed, seeded binarization of the held-out images for Bernoulli models; the encoder sees the grey image.
    target = (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32) if bernoulli else x
    codes = pair.encode(x, labels)
    mu = codes["mu"]
    recon = pair.decode(mu, labels)
    values: dict = {
        "n_images": len(test),
        "binarization_seed": EVAL_SEED if bernoulli else None,
        "active_units": int((mu.var(0) > ACTIVE_UNIT_THRESHOLD).sum()),
        "recon_squared_error": float(((recon["image"] - x) ** 2).reshape(len(x), -1).sum(1).mean()),
    }
    if spec.stochastic:
        log(f"importance-weighted bound with K={iw_samples} on {len(test)} held-out images ...")
        values.update(_likelihood_terms(pair, spec, x, target, labels, mu, codes["logvar"], iw_samples, rng))
        values["iw_samples"] = iw_samples
    else:
        values["reconstruction"] = _nll(spec, recon, torch.from_numpy(target)).mean().item()
    if spec.conditional:
        values.update(_generation_terms(pair, spec, data, test, mu.shape[1], rng, log, device))
    return Metrics(**values)


def format_metrics(m: Metrics) -> str:
    rows = [(k, v) for k, v in m.model_dump().items() if v is not None and k != "split"]
    return "\n".join(f"  {k:<20} {v:.4f}" if isinstance(v, float) else f"  {k:<20} {v}" for k, v in rows)

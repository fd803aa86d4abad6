"""Held-out evaluation of an exported model, run on its ONNX graphs (what ships), never on the training weights."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from vaeformat.manifest import Manifest, Metrics
from vaeformat.prior import FittedPrior, read_prior

from .classifier import frechet_distance, train_classifier
from .corruption import Corruption
from .data import Dataset, check_rows, load_dataset
from .graphs import OnnxPair
from .objectives import (
    bernoulli_nll,
    gaussian_nll,
    importance_weighted_bound,
    kl_per_dim,
    log_normal,
    log_standard_normal,
)

EVAL_SEED = 20240601  # one fixed binarization and one fixed set of noise draws, so figures are repeatable
ACTIVE_UNIT_THRESHOLD = 0.01
ROWS_PER_DECODE = 16384  # K x images decoded per onnxruntime call
QUANTILES = np.linspace(0.0, 1.0, 101)  # the score quantiles stored for /score's percentile
GENERATED_PER_HELD_OUT = 4  # generated (and floor) images per held-out image in the Frechet distances


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
    dataset_size: int | None = None  # images the dataset had when the split was made
    prior_path: str | None = None  # a fitted prior beside the graphs, judged like the standard one
    corrupt: str | None = None  # a denoising model's corruption: evaluation adds the denoising error

    @classmethod
    def from_manifest(cls, m: Manifest) -> EvalSpec:
        return cls(
            m.training.dataset,
            m.image.channels,
            m.image.height,
            m.image.width,
            m.stochastic,
            m.conditional,
            len(m.labels) if m.labels else None,
            m.likelihood,
            m.gaussian_sigma,
            m.training.split.test_indices,
            m.training.split.dataset_size,
            m.prior.path if m.prior else None,
            m.training.corrupt,
        )


def _nll(spec: EvalSpec, decoded: dict[str, np.ndarray], target: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) per row from decoder outputs: [..., C, H, W] -> [...]."""
    if spec.likelihood == "bernoulli":
        return bernoulli_nll(torch.from_numpy(decoded["logits"]), target)
    if spec.gaussian_sigma is None:
        raise ValueError("a gaussian model's manifest must give gaussian_sigma")
    sigma = torch.tensor(math.log(spec.gaussian_sigma))
    return gaussian_nll(torch.from_numpy(decoded["image"]), target, sigma)


def _likelihood_terms(
    pair: OnnxPair,
    spec: EvalSpec,
    x: np.ndarray,
    target: np.ndarray,
    labels,
    mu,
    logvar,
    k: int,
    rng: np.random.Generator,
    progress: bool = True,
) -> dict[str, Any]:
    """Importance-weighted bound with k samples, and the ELBO, reconstruction and KL from the same draws."""
    n, d = mu.shape
    per = max(1, ROWS_PER_DECODE // k)
    iw, elbo, rec = [], [], []
    # Most of a short run's evaluation time is here (n x k decodes): a bar on stderr shows it moving.
    bar = tqdm(total=n, desc=f"IW bound, K={k}", unit="image", disable=not progress, dynamic_ncols=True)
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
        bar.update(b)
    bar.close()
    kl_dims = kl_per_dim(torch.from_numpy(mu), torch.from_numpy(logvar))  # [N, D]
    kl = kl_dims.sum(1)
    per_image = -torch.cat(iw)  # [N]: what /score's nll estimates, image by image
    return {
        "iw_bound": per_image.mean().item(),
        "negative_elbo": -torch.cat(elbo).mean().item(),
        "nll_per_image": per_image.double().numpy(),
        "reconstruction": torch.cat(rec).mean().item(),
        "kl": kl.mean().item(),
        "kl_per_dim": kl_dims.mean(0).double().tolist(),
    }  # [D]: which dimensions carry information


def _generation_terms(
    pair: OnnxPair,
    spec: EvalSpec,
    data: Dataset,
    test: np.ndarray,
    latent_dim: int,
    rng: np.random.Generator,
    log: Callable[[str], None],
    device: torch.device | str,
    prior: FittedPrior | None,
    progress: bool = True,
) -> dict[str, float]:
    """Label agreement and Frechet distance of generated images, judged by a classifier trained without test rows.

    Both priors are judged the same way: N(0, I) when the model was trained against it (vae, cvae), and the
    fitted mixture when the folder has one; label agreement only for a conditional model (it asks for a label).
    Each Frechet distance compares GENERATED_PER_HELD_OUT times as many images as the held-out set has, label by
    label (fewer where a label has fewer non-held-out images), against the held-out images, and so does the floor
    (real non-held-out images): with 1,000 images on each side the estimate is mostly its own upward bias and noise
    (five seeded draws of 1,000 put the 32-d mnist-vae's fitted figure anywhere from 25.9 to 32.9 and the floor
    near 6.8; of 4,000, from 25.1 to 27.9 and 4.1), and a figure that decides something must not be one noisy draw.
    The held-out side stays the held-out images: they are all the model never saw. Standard prior, fitted prior and
    floor are measured at the same size, so they compare.
    """
    others = np.setdiff1d(np.arange(len(data)), test)
    labels, class_names = data.known_labels()

    def floats(rows: np.ndarray) -> np.ndarray:  # [len(rows), C, H, W] in [0, 1]; a folder on disk reads just these
        return data.images[rows].astype(np.float32) / 255.0

    log(f"training the independent classifier on {len(others)} non-held-out images ...")
    classes = spec.num_classes or len(class_names)
    clf = train_classifier(
        floats(others), labels[others], classes, seed=EVAL_SEED % 1000, device=device, progress=progress
    )
    test_feats, test_pred = clf.features(floats(test))
    accuracy = float((test_pred == labels[test]).mean())
    # The labels of the generated (and floor) images: the held-out set's label counts, GENERATED_PER_HELD_OUT times.
    pool = {c: others[labels[others] == c] for c in np.unique(labels[test])}
    counts = {c: min(GENERATED_PER_HELD_OUT * int((labels[test] == c).sum()), len(rows)) for c, rows in pool.items()}
    want = np.concatenate([np.full(n, c, dtype=np.int64) for c, n in counts.items()])  # [M]
    asked = want if spec.conditional else None
    values: dict = {"classifier_accuracy": accuracy}
    if spec.stochastic:
        z = rng.standard_normal((len(want), latent_dim), dtype=np.float32)
        gen_feats, gen_pred = clf.features(pair.decode(z, asked)["image"])
        values["frechet_distance"] = frechet_distance(gen_feats, test_feats)
        if spec.conditional:
            values["label_agreement"] = float((gen_pred == want).mean())
    # The floor: real non-held-out images with the same label counts, against the same held-out images.
    floor_rows = np.concatenate([rng.choice(pool[c], n, replace=False) for c, n in counts.items()])
    floor_feats, _ = clf.features(floats(floor_rows))
    values["frechet_floor"] = frechet_distance(floor_feats, test_feats)
    if prior is not None:  # drawn after the figures above, so adding a prior leaves them as they were
        z = prior.draw(len(want), rng, 1.0, asked)
        fit_feats, fit_pred = clf.features(pair.decode(z, asked)["image"])
        values["frechet_distance_fitted"] = frechet_distance(fit_feats, test_feats)
        if spec.conditional:
            values["label_agreement_fitted"] = float((fit_pred == want).mean())
    return values


def evaluate(
    folder: Path,
    spec: EvalSpec,
    iw_samples: int = 500,
    data: Dataset | None = None,
    log: Callable[[str], None] = print,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> Metrics:
    """Measure the exported graphs in `folder` on the held-out rows `spec.test_indices`.

    The graphs run in onnxruntime on the CPU (what ships); `device` is where the judging classifier trains.
    """
    if data is None:
        data = load_dataset(spec.dataset, size=(spec.height, spec.width), channels=spec.channels)
    check_rows(data, spec.dataset_size, spec.test_indices, Path(folder).name)
    pair = OnnxPair(folder)
    rng = np.random.default_rng(EVAL_SEED)
    test = np.asarray(spec.test_indices)
    x = data.images[test].astype(np.float32) / 255.0  # [N, C, H, W] grayscale/colour in [0, 1]
    labels = data.known_labels()[0][test].astype(np.int64) if spec.conditional else None
    bernoulli = spec.likelihood == "bernoulli"
    # One fixed, seeded binarization of the held-out images for Bernoulli models; the encoder sees the grey image.
    target = (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32) if bernoulli else x
    codes = pair.encode(x, labels)
    mu = codes["mu"]
    recon = pair.decode(mu, labels)
    squared_error = ((recon["image"] - x) ** 2).reshape(len(x), -1).sum(1)  # [N]
    values: dict = {
        "n_images": len(test),
        "binarization_seed": EVAL_SEED if bernoulli else None,
        "active_units": int((mu.var(0) > ACTIVE_UNIT_THRESHOLD).sum()),
        "recon_squared_error": float(squared_error.mean()),
        "code_variance": mu.var(0).astype(np.float64).tolist(),  # [D]; ranks an ae's dimensions for /traverse
    }
    if spec.stochastic:
        log(f"importance-weighted bound with K={iw_samples} on {len(test)} held-out images ...")
        values.update(_likelihood_terms(pair, spec, x, target, labels, mu, codes["logvar"], iw_samples, rng, progress))
        values["iw_samples"] = iw_samples
    else:
        values["reconstruction"] = _nll(spec, recon, torch.from_numpy(target)).mean().item()
    if spec.corrupt:  # its own seeded generator, so the figures above and below stay as they were
        noisy = Corruption.parse(spec.corrupt)(torch.from_numpy(x), torch.Generator().manual_seed(EVAL_SEED)).numpy()
        denoised = pair.decode(pair.encode(noisy, labels)["mu"], labels)["image"]
        values["denoising_squared_error"] = float(((denoised - x) ** 2).reshape(len(x), -1).sum(1).mean())
    # What /score turns into a percentile: the held-out images' scores at 0, 1, ..., 100 %.
    per_image = {"nll": values.pop("nll_per_image", None), "squared_error": squared_error}
    values["score_quantiles"] = {
        name: np.quantile(np.asarray(v, dtype=np.float64), QUANTILES).tolist()
        for name, v in per_image.items()
        if v is not None
    }
    prior = _read_prior(folder, spec)
    if data.labels is not None and (spec.stochastic or prior is not None):
        values.update(_generation_terms(pair, spec, data, test, mu.shape[1], rng, log, device, prior, progress))
    return Metrics(**values)


def _read_prior(folder: Path, spec: EvalSpec) -> FittedPrior | None:
    if spec.prior_path is None:
        return None
    with open(Path(folder) / spec.prior_path, "rb") as f:
        return read_prior(f)


def format_metrics(m: Metrics) -> str:
    hidden = ("split", "score_quantiles", "ood")  # long lists; the README's tables show what they give
    rows = [(k, v) for k, v in m.model_dump().items() if v is not None and k not in hidden]
    shown = [(k, f"{v:.4f}" if isinstance(v, float) else _short(v) if isinstance(v, list) else v) for k, v in rows]
    return "\n".join(f"  {k:<20} {v}" for k, v in shown)


def _short(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"

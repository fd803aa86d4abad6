"""A fitted prior: a Gaussian mixture over posterior means (one per class for a conditional model), in numpy.

The file (`prior.npz`, its sha256 in the manifest's `prior`) holds plain arrays and is read with
allow_pickle=False: `weights` float64 [C, K], `means` float64 [C, K, D] and `scales` float64 [C, K, D, D], the
lower-triangular Cholesky factors of the covariances. C is the number of classes (1 for an unconditional model);
a class with fewer than K components gives the rest weight 0. Training writes it (training/prior.py fits it);
training's evaluation and the service sample it with the same `FittedPrior.draw`, so the figures measure what is
served.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .arrays import read_arrays
from .errors import ManifestError
from .files import open_confined, shown
from .manifest import Manifest, verify_prior

PRIOR_FILE = "prior.npz"
_ARRAYS = ("weights", "means", "scales")
# A prior file is K x D x D floats per class; 64 MiB is far above any sane mixture and refuses a hostile file.
MAX_PRIOR_BYTES = 64 * 1024 * 1024


class PriorFormatError(ValueError):
    """A prior file whose arrays do not have the documented shapes or values; the message says which."""


@dataclass(frozen=True)
class FittedPrior:
    weights: np.ndarray  # [C, K], each row sums to 1
    means: np.ndarray  # [C, K, D]
    scales: np.ndarray  # [C, K, D, D], lower-triangular: covariance = scale @ scale.T

    @property
    def classes(self) -> int:
        return int(self.weights.shape[0])

    @property
    def latent_dim(self) -> int:
        return int(self.means.shape[2])

    def components(self) -> list[int]:
        """Components in use (weight > 0) per class: [C]."""
        return [int(n) for n in (self.weights > 0).sum(1)]

    def draw(self, n: int, rng: np.random.Generator, temperature: float, labels: np.ndarray | None) -> np.ndarray:
        """z [n, D] float32: a component per row by weight, then mean + temperature * scale @ eps.

        `labels` int64 [n] picks each row's class (None: class 0, for an unconditional prior). The draws are, in
        order, n uniforms for the components and n x D standard normals, all from `rng`.
        """
        c = np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        cumulative = np.cumsum(self.weights, axis=1)[c]  # [n, K]
        u = rng.random(n)[:, None] * cumulative[:, -1:]
        k = np.minimum((cumulative <= u).sum(1), self.weights.shape[1] - 1)  # [n]
        k = np.where(self.weights[c, k] > 0, k, np.argmax(self.weights[c], axis=1))  # never a padded component
        eps = rng.standard_normal((n, self.latent_dim))
        z = self.means[c, k] + temperature * np.einsum("nij,nj->ni", self.scales[c, k], eps)
        return z.astype(np.float32)

    def log_density(self, z: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """log of the mixture density at z [n, D] (class `labels` [n], or class 0): [n]."""
        c = np.zeros(len(z), dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64)
        d = self.latent_dim
        diff = z[:, None, :].astype(np.float64) - self.means[c]  # [n, K, D]
        solved = np.linalg.solve(self.scales[c], diff[..., None])[..., 0]  # L^-1 (z - m): [n, K, D]
        log_det = np.log(np.abs(np.diagonal(self.scales[c], axis1=2, axis2=3))).sum(-1)  # [n, K]
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights[c])
        terms = log_w - 0.5 * (solved**2).sum(-1) - log_det - 0.5 * d * np.log(2 * np.pi)
        top = terms.max(1, keepdims=True)
        return (top[:, 0] + np.log(np.exp(terms - top).sum(1))).astype(np.float64)

    def check(self, latent_dim: int, classes: int) -> None:
        """PriorFormatError unless the arrays fit a model with this latent size and class count (1: unconditional)."""
        w, m, s = self.weights, self.means, self.scales
        if w.ndim != 2 or m.ndim != 3 or s.ndim != 4:
            raise PriorFormatError(
                f"arrays have {w.ndim}, {m.ndim} and {s.ndim} axes; want weights [C, K], means [C, K, D], "
                "scales [C, K, D, D]"
            )
        want = (classes, w.shape[1], latent_dim)
        if m.shape != want or s.shape != (*want, latent_dim) or w.shape[0] != classes or w.shape[1] < 1:
            raise PriorFormatError(
                f"shapes weights {list(w.shape)}, means {list(m.shape)}, scales {list(s.shape)} do not fit a model "
                f"with {classes} class(es) and latent_dim {latent_dim}; refit with `python -m training fit-prior`"
            )
        if not all(np.isfinite(a).all() for a in (w, m, s)):
            raise PriorFormatError("holds a NaN or an infinity; refit with `python -m training fit-prior`")
        if (w < 0).any() or not np.allclose(w.sum(1), 1.0, atol=1e-6):
            raise PriorFormatError("weights must be >= 0 and sum to 1 for each class")
        diagonal = np.diagonal(s, axis1=2, axis2=3)[w > 0]
        if (diagonal <= 0).any() or not np.allclose(s, np.tril(s)):
            raise PriorFormatError("scales must be lower-triangular Cholesky factors with a positive diagonal")


def read_prior(f: BinaryIO) -> FittedPrior:
    """A FittedPrior from an open .npz file, without pickle; PriorFormatError for anything else."""
    arrays = read_arrays(f, _ARRAYS, MAX_PRIOR_BYTES, "prior file", PriorFormatError)
    return FittedPrior(**{name: a.astype(np.float64) for name, a in arrays.items()})


def write_prior(path: Path, prior: FittedPrior) -> Path:
    """Save as an uncompressed .npz of float64 arrays (readable with allow_pickle=False)."""
    with open(path, "wb") as f:
        np.savez(f, weights=prior.weights, means=prior.means, scales=prior.scales)
    return path


def load_prior(folder: Path, manifest: Manifest, root: Path | None = None) -> FittedPrior | None:
    """The model's fitted prior, checked like its graphs (confined, sha256) and against its latent size and classes.

    None when the manifest names none; ManifestError naming the file and the field for anything wrong.
    """
    entry = manifest.prior
    real = verify_prior(folder, manifest, root)
    if entry is None or real is None:
        return None
    where = shown(Path(folder) / entry.path, root)
    f, _ = open_confined(real, Path(root or folder).resolve(), where, "prior.path")
    try:
        with f:
            prior = read_prior(f)
        prior.check(manifest.latent_dim, len(manifest.labels or [None]))
    except PriorFormatError as e:
        raise ManifestError(
            f"{where}: {e} (manifest field 'prior.path' names it); refit it: python -m training fit-prior FOLDER"
        ) from None
    except OSError as e:
        raise ManifestError(
            f"{where}: cannot be read ({e.strerror or e}); manifest field 'prior.path' names it"
        ) from None
    if prior.components() != entry.components:
        raise ManifestError(
            f"{where}: holds {prior.components()} components per class, but manifest field 'prior.components' says "
            f"{entry.components}; refit it: python -m training fit-prior FOLDER"
        )
    return prior

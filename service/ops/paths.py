"""Latent-space arithmetic in numpy: interpolation paths, traversal grids, attribute vectors and edits.

Pure functions of float32 arrays (latents [N, D]); service/ops/latent.py runs them against a model's graphs.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

InterpolationPath = Literal["linear", "spherical"]
# Below this angle (radians) between the two ends, slerp's sin(theta) denominator loses precision and the great
# circle is indistinguishable from the chord, so the path falls back to a straight line.
_PARALLEL = 1e-4


def lerp(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """`steps` points from a to b [D] on the straight line, both ends included: [steps, D]."""
    t = np.linspace(0.0, 1.0, steps, dtype=np.float64)[:, None]
    path = (1.0 - t) * a.astype(np.float64) + t * b.astype(np.float64)
    path[0], path[-1] = a, b  # the ends exactly as given, whatever rounding did
    return path.astype(np.float32)


def slerp(a: np.ndarray, b: np.ndarray, steps: int) -> np.ndarray:
    """`steps` points from a to b [D] along the great circle between their directions: [steps, D].

    The norm goes linearly from |a| to |b|, so the path stays on the shell where standard Gaussian samples lie
    (norm about sqrt(D)); a straight line between two such samples dips to about sqrt(D / 2) half-way, into a
    region the decoder rarely saw. Ends that are (anti)parallel or zero have no unique great circle: a straight
    line then.
    """
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norm_a, norm_b = float(np.linalg.norm(a64)), float(np.linalg.norm(b64))
    if norm_a == 0.0 or norm_b == 0.0:
        return lerp(a, b, steps)
    u, v = a64 / norm_a, b64 / norm_b
    theta = float(np.arccos(np.clip(u @ v, -1.0, 1.0)))
    if theta < _PARALLEL or np.pi - theta < _PARALLEL:
        return lerp(a, b, steps)
    t = np.linspace(0.0, 1.0, steps, dtype=np.float64)[:, None]
    direction = (np.sin((1.0 - t) * theta) * u + np.sin(t * theta) * v) / np.sin(theta)  # unit vectors [steps, D]
    path = direction * ((1.0 - t) * norm_a + t * norm_b)
    path[0], path[-1] = a, b
    return path.astype(np.float32)


def interpolate(a: np.ndarray, b: np.ndarray, steps: int, path: InterpolationPath) -> np.ndarray:
    """The path from a to b [D] with `steps` points, ends included: [steps, D]."""
    return slerp(a, b, steps) if path == "spherical" else lerp(a, b, steps)


def attribute_vector(with_: np.ndarray, without: np.ndarray) -> np.ndarray:
    """Mean latent of the images with an attribute [N1, D] minus that of those without [N2, D]: [D]."""
    return (with_.astype(np.float64).mean(axis=0) - without.astype(np.float64).mean(axis=0)).astype(np.float32)


def edits(means: np.ndarray, vector: np.ndarray, strengths: np.ndarray) -> np.ndarray:
    """Each mean [N, D] moved by each strength [S] times the vector [D]: [N * S, D], image by image.

    Strength 0 gives the mean itself, bit for bit (mu + 0 * v is mu for a finite v).
    """
    moved = means[:, None, :] + strengths.astype(np.float32)[None, :, None] * vector.astype(np.float32)[None, None, :]
    return moved.reshape(-1, means.shape[1])


def traversal_values(extent: float, steps: int) -> np.ndarray:
    """`steps` offsets from -extent to +extent, evenly spaced: [steps]."""
    return np.linspace(-extent, extent, steps, dtype=np.float32)


def traversal(base: np.ndarray, dims: np.ndarray, values: np.ndarray) -> np.ndarray:
    """One row per dimension in `dims` [K]: the base [D] with that dimension offset by each value [S]: [K * S, D]."""
    z = np.repeat(base.astype(np.float32)[None, None, :], len(dims), axis=0).repeat(len(values), axis=1)  # [K, S, D]
    z[np.arange(len(dims)), :, dims] += values.astype(np.float32)
    return z.reshape(-1, base.shape[0])


def most_informative(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores [D], largest first (ties: lower index first): [min(k, D)]."""
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    return order[: min(k, len(scores))].astype(np.int64)

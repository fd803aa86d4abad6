"""Latent-space operations on a served model: interpolation, attribute vectors, edits, traversals.

Each function is the one model call a route makes: it resolves labels and checks capabilities through the model
(`labels.resolve`, `has_prior`), encodes images to their posterior means, does the arithmetic (service/ops/paths.py) and
decodes. Images are float32 [N, C, H, W] in [0, 1], latents [N, D], labels int64 [N].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import CapabilityMissing, InvalidInput, NotGenerative
from ..models.labels import Label
from ..models.model import Encoding, ServedModel
from . import paths as latent

DEFAULT_DIMS = 8  # /traverse rows when `dims` is not given: the most informative dimensions, up to this many


@dataclass(frozen=True)
class Interpolation:
    images: np.ndarray  # [steps, C, H, W]
    z: np.ndarray  # [steps, D]
    labels: np.ndarray | None  # [steps]


@dataclass(frozen=True)
class Traversal:
    images: np.ndarray  # [dims * steps, C, H, W], row by row
    dims: np.ndarray  # [K] the dimension of each row
    scores: list[float] | None  # [K] each row's per-dimension figure (None: the manifest has none)
    score_name: str | None  # which figure: "kl_per_dim" or "code_variance"
    ranked_by: str  # that figure's name, "index" (no figure: the first dimensions) or "request" (dims given)
    values: np.ndarray  # [steps] offsets from the base
    labels: np.ndarray | None  # [dims * steps]


async def interpolate(
    model: ServedModel,
    *,
    images: np.ndarray | None = None,
    z: np.ndarray | None = None,
    labels: Sequence[Label] | None,
    steps: int,
    path: latent.InterpolationPath,
) -> Interpolation:
    """`steps` images on the path between two ends: two images (encoded to their posterior means) or two latents."""
    ends = len(images) if images is not None else len(z) if z is not None else 0
    if ends != 2:
        given = "images" if images is not None else "latent vectors"
        raise InvalidInput(f"got {ends} {given}; interpolation goes between exactly two ends: send two")
    resolved = model.labels.resolve(labels, 2, required=True)
    if resolved is not None and resolved[0] != resolved[1]:
        raise CapabilityMissing(
            f"model {model.name!r} decodes from a class index (decoder input 'label', int64), not from a label "
            "embedding that could be interpolated, so it cannot go from one label to another; give one label for "
            "both ends"
        )
    if images is not None:
        z = (await model.encode(images, resolved if model.encoder_takes_label else None)).mu
    assert z is not None
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below
        path_z = latent.interpolate(z[0], z[1], steps, path)
    if not np.isfinite(path_z).all():
        raise InvalidInput(f"the {path} path between these latents overflows float32; send smaller latents")
    decode_labels = None if resolved is None else np.full(steps, resolved[0], dtype=np.int64)
    return Interpolation(await model.decode(path_z, decode_labels), path_z, decode_labels)


async def _means(model: ServedModel, images: np.ndarray, labels: Sequence[Label] | None) -> np.ndarray:
    """Posterior means [N, D] of images, with labels resolved for an encoder that takes them."""
    resolved = model.labels.resolve(labels, len(images), required=model.encoder_takes_label)
    return (await model.encode(images, resolved if model.encoder_takes_label else None)).mu


async def attribute(
    model: ServedModel, with_: np.ndarray, without: np.ndarray, labels: Sequence[Label] | None
) -> np.ndarray:
    """Mean posterior mean of the images `with_` an attribute minus that of those `without` it: [D].

    Labels (for an encoder that takes them): one for all, or one per image, `with_` first.
    """
    for name, images in (("with", with_), ("without", without)):
        if len(images) == 0:
            raise InvalidInput(f"the set '{name}' holds no image; an attribute vector needs images in both sets")
    means = await _means(model, np.concatenate([with_, without]), labels)
    return latent.attribute_vector(means[: len(with_)], means[len(with_) :])


def _checked_vector(model: ServedModel, vector: np.ndarray) -> np.ndarray:
    d = model.manifest.latent_dim
    if vector.shape != (d,):
        raise InvalidInput(
            f"body field 'vector' holds {vector.size} numbers; model {model.name!r} has latent_dim {d}: send a "
            "vector from POST /attribute on the same model"
        )
    if not np.isfinite(vector).all():
        raise InvalidInput("body field 'vector' holds NaN or infinite values; send finite numbers")
    return vector.astype(np.float32)


async def edit(
    model: ServedModel,
    images: np.ndarray,
    *,
    vector: np.ndarray | None = None,
    sets: tuple[np.ndarray, np.ndarray] | None = None,
    labels: Sequence[Label] | None,
    strengths: np.ndarray,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Each image's posterior mean plus each strength times the vector, decoded: images [N * S], labels [N * S].

    The vector is given, or computed from `sets` (with, without) as POST /attribute does, in the same encoder call.
    Labels: one for all, or one per image in the order images, with, without.
    """
    n = len(images)
    if sets is not None:
        for name, group in zip(("with", "without"), sets, strict=True):
            if len(group) == 0:
                raise InvalidInput(f"the set '{name}' holds no image; an attribute vector needs images in both sets")
        encoded = np.concatenate([images, *sets])
    else:
        encoded = images
    resolved = model.labels.resolve(labels, len(encoded), required=True)
    encoding: Encoding = await model.encode(encoded, resolved if model.encoder_takes_label else None)
    means = encoding.mu
    if sets is not None:
        vector = latent.attribute_vector(means[n : n + len(sets[0])], means[n + len(sets[0]) :])
    if vector is None:
        raise InvalidInput("no attribute vector: send body field 'vector', or the sets 'with' and 'without'")
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below, by name
        z = latent.edits(means[:n], _checked_vector(model, vector), strengths)
    if not np.isfinite(z).all():
        raise InvalidInput("a strength times the vector overflows float32; use smaller strengths")
    decode_labels = None if resolved is None else np.repeat(resolved[:n], len(strengths))
    return await model.decode(z, decode_labels), decode_labels


def ranking(model: ServedModel) -> tuple[np.ndarray | None, str | None]:
    """Per-dimension informativeness [D] from the manifest and its name: held-out KL, else the codes' variance."""
    metrics, d = model.manifest.metrics, model.manifest.latent_dim
    for name, values in (("kl_per_dim", metrics.kl_per_dim), ("code_variance", metrics.code_variance)):
        if values is not None and len(values) == d:
            return np.asarray(values, dtype=np.float64), name
    return None, None


def traverse_dims(model: ServedModel, dims: Sequence[int] | None) -> int:
    """How many rows a traversal with `dims` makes (the default: the most informative, up to DEFAULT_DIMS)."""
    return len(dims) if dims else min(DEFAULT_DIMS, model.manifest.latent_dim)


async def traverse(
    model: ServedModel,
    *,
    image: np.ndarray | None,
    labels: Sequence[Label] | None,
    dims: Sequence[int] | None,
    steps: int,
    extent: float,
) -> Traversal:
    """One row per dimension: the base (prior mean, or the image's posterior mean) moved from -extent to +extent."""
    d = model.manifest.latent_dim
    chosen = np.asarray(dims or [], dtype=np.int64)
    if dims:
        bad = [int(i) for i in chosen if not 0 <= i < d]
        if bad:
            raise InvalidInput(f"parameter 'dims' holds {bad[:5]}; model {model.name!r} has dimensions 0..{d - 1}")
        if len(set(chosen.tolist())) != len(chosen):
            raise InvalidInput("parameter 'dims' names a dimension twice; name each at most once")
    if image is None and not model.has_prior:
        raise NotGenerative(
            f"model {model.name!r} is a deterministic autoencoder (kind {model.manifest.kind!r}): it has no prior, "
            "so there is no prior mean to centre a traversal on; POST /traverse with an image as the base"
        )
    if image is not None and len(image) != 1:
        raise InvalidInput(f"got {len(image)} images; a traversal has one base: send one image")
    resolved = model.labels.resolve(labels, 1, required=True)
    scores, score_name = ranking(model)
    ranked_by = "request" if dims else score_name or "index"
    if not dims:
        chosen = (
            latent.most_informative(scores, DEFAULT_DIMS) if scores is not None else np.arange(min(DEFAULT_DIMS, d))
        )
    if image is not None:
        encoding: Encoding = await model.encode(image, resolved if model.encoder_takes_label else None)
        base = encoding.mu[0]
    else:
        base = np.zeros(d, dtype=np.float32)  # the mean of the N(0, I) prior
    values = latent.traversal_values(extent, steps)
    z = latent.traversal(base, chosen, values)
    decode_labels = None if resolved is None else np.full(len(z), resolved[0], dtype=np.int64)
    row_scores = None if scores is None else [float(scores[i]) for i in chosen]
    images = await model.decode(z, decode_labels)
    return Traversal(images, chosen, row_scores, score_name, ranked_by, values, decode_labels)

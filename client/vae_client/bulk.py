"""Large work in requests the service accepts: its limits (GET /models, "limits") decide how many rows go in each,
and the answers are joined in order, as one request would have returned them.

A builder here returns a `Job`: the calls to send, one after another, and the function that joins their results.
Both clients send a job's calls themselves (client/vae_client/clients.py).
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from . import calls
from .calls import Call, Labels
from .results import Classified, Encoding, Generated, Reconstruction, Scores
from .wire import Images, each_image, file_bytes

T = TypeVar("T")
R = TypeVar("R")
HEADROOM = 0.9  # of each byte limit: multipart and .npy headers, and the service's own reckoning, take the rest
PART_BYTES = 256  # a multipart part's own headers, about


@dataclass(frozen=True)
class Job(Generic[T, R]):
    """Calls that together do one method's work, and how their results become the method's result."""

    calls: list[Call[T]]
    join: Callable[[list[T]], R]
    rows: list[int]  # rows each call carries (the progress bar counts them)


SAMPLES_OF_OLDER_SERVICES = 64  # the K /score draws by default, for a service that does not say it in GET /models


@dataclass(frozen=True)
class Limits:
    """What one request may carry, and the shapes of the models, as GET /models tells them."""

    limits: dict[str, Any]
    models: dict[str, dict[str, Any]]
    default: str | None
    default_conditional: str | None
    default_samples: int = SAMPLES_OF_OLDER_SERVICES  # /score's and /classify's K when a call gives none

    @classmethod
    def from_models(cls, document: dict[str, Any]) -> Limits:
        models = {m["name"]: m for m in document["models"]}
        samples = int((document.get("defaults") or {}).get("samples", SAMPLES_OF_OLDER_SERVICES))
        return cls(document.get("limits") or {}, models, document["default"], document["default_conditional"], samples)

    def limit(self, name: str, fallback: int) -> int:
        return int(self.limits.get(name, fallback))

    def model(self, name: str | None, conditional: bool = False) -> dict[str, Any] | None:
        chosen = name or (self.default_conditional if conditional else self.default)
        return self.models.get(chosen) if chosen else None

    def image_values(self, name: str | None, conditional: bool = False) -> int:
        """Pixels x channels of one of the model's images (0 when unknown: no byte bound from it)."""
        model = self.model(name, conditional)
        return 0 if model is None else int(np.prod([model["image"][k] for k in ("channels", "height", "width")]))

    def latent_dim(self, name: str | None) -> int:
        model = self.model(name)
        return 0 if model is None else int(model["latent_dim"])

    def label_count(self, name: str | None) -> int:
        """The model's labels (1 for an unconditional model): /score draws its samples once for each."""
        model = self.model(name)
        return max(1, len((model or {}).get("labels") or []))


def spans(sizes: Sequence[int], max_rows: int, max_bytes: int | None = None) -> list[slice]:
    """Consecutive rows in groups of at most `max_rows`, and at most `max_bytes` of their sizes together (a row
    larger than that alone goes alone: the service's answer says what to do about it)."""
    out, start, total = [], 0, 0
    max_rows = max(1, max_rows)
    for i, size in enumerate(sizes):
        full = i - start >= max_rows or (max_bytes is not None and i > start and total + size > max_bytes)
        if full:
            out.append(slice(start, i))
            start, total = i, 0
        total += size
    if start < len(sizes) or not sizes:
        out.append(slice(start, len(sizes)))
    return out


def _labels_for(label: Labels, rows: slice, n: int) -> Labels:
    """One label for all rows stays as it is; one per row is cut like the rows."""
    if label is None or isinstance(label, str | int):
        return label
    per_row = np.asarray(label).ravel().tolist()
    return per_row[rows] if len(per_row) == n and n > 1 else label


SEEDS = 2**63  # the service takes seeds 0 .. 2**63 - 1


def _job_seed(seed: int | None) -> int:
    """The job's seed: the one given, or one drawn here, so that the seed the joined result reports repeats every
    part of it (seeds drawn by the service request by request would repeat the first part only)."""
    return secrets.randbits(32) if seed is None else seed


def _seed(seed: int, index: int) -> int:
    """Request i draws with seed + i: the whole job repeats with the same seed, and the parts do not repeat."""
    return (seed + index) % SEEDS


def _response_rows(limits: Limits, values_per_row: int, bytes_per_value: int) -> int:
    if values_per_row <= 0:
        return sys.maxsize
    return max(1, int(limits.limit("max_response_bytes", 16 << 20) * HEADROOM) // (values_per_row * bytes_per_value))


def _image_spans(limits: Limits, files: list[bytes], max_rows: int) -> list[slice]:
    body = int(limits.limit("max_body_bytes", 10 << 20) * HEADROOM)
    return spans([len(f) + PART_BYTES for f in files], min(max_rows, limits.limit("max_images", 64)), body)


def _files(images: Images) -> list[bytes]:
    return [file_bytes(image)[0] for image in each_image(images)]


def encode(
    limits: Limits, images: Images, samples: int | None, seed: int | None, label: Labels, model: str | None
) -> Job[Encoding, Encoding]:
    files = _files(images)
    d, k = limits.latent_dim(model), samples or 0
    rows = min(limits.limit("max_latents", 1024) // max(1, k), _response_rows(limits, (2 + k) * d, 24))
    parts = _image_spans(limits, files, rows)
    job_seed = _job_seed(seed) if samples else None
    jobs = [
        calls.encode(
            files[s],
            samples,
            None if job_seed is None else _seed(job_seed, i),
            _labels_for(label, s, len(files)),
            model,
        )
        for i, s in enumerate(parts)
    ]

    def join(results: list[Encoding]) -> Encoding:
        z = None if results[0].z is None else np.concatenate([r.z for r in results if r.z is not None])
        return Encoding(
            results[0].model,
            np.concatenate([r.mu for r in results]),
            np.concatenate([r.logvar for r in results]),
            z,
            results[0].seed,
        )

    return Job(jobs, join, [s.stop - s.start for s in parts])


def decode(limits: Limits, z: ArrayLike, label: Labels, model: str | None) -> Job[np.ndarray, np.ndarray]:
    latents = np.asarray(z, dtype=np.float32)
    latents = latents[None] if latents.ndim == 1 else latents
    n = len(latents)
    rows = min(limits.limit("max_latents", 1024), _response_rows(limits, limits.image_values(model), 4))
    body = int(limits.limit("max_body_bytes", 10 << 20) * HEADROOM)
    rows = min(rows, max(1, body // max(1, latents.shape[-1] * 4)))
    parts = spans([1] * n, rows)
    jobs = [calls.decode(latents[s], _labels_for(label, s, n), model) for s in parts]
    return Job(jobs, np.concatenate, [s.stop - s.start for s in parts])


def reconstruct(
    limits: Limits, images: Images, label: Labels, model: str | None
) -> Job[Reconstruction, Reconstruction]:
    files = _files(images)
    parts = _image_spans(limits, files, _response_rows(limits, limits.image_values(model), 4))
    jobs = [calls.reconstruct(files[s], _labels_for(label, s, len(files)), model) for s in parts]

    def join(results: list[Reconstruction]) -> Reconstruction:
        images_ = np.concatenate([r.images for r in results])
        return Reconstruction(results[0].model, images_, np.concatenate([r.error for r in results]))

    return Job(jobs, join, [s.stop - s.start for s in parts])


def _scored_images(limits: Limits, samples: int | None, model: str | None) -> int:
    """Images per /score or /classify request: K draws for each of the model's labels are one decoder row each."""
    per_image = (samples or limits.default_samples) * limits.label_count(model)
    return max(1, limits.limit("max_score_rows", 16384) // per_image)


def score(
    limits: Limits, images: Images, samples: int | None, seed: int | None, label: Labels, model: str | None
) -> Job[Scores, Scores]:
    files = _files(images)
    rows = _scored_images(limits, samples, model)
    parts = _image_spans(limits, files, rows)
    job_seed = _job_seed(seed)
    jobs = [
        calls.score(files[s], samples, _seed(job_seed, i), _labels_for(label, s, len(files)), model)
        for i, s in enumerate(parts)
    ]

    def join(results: list[Scores]) -> Scores:
        first = results[0]
        return Scores(first.model, first.samples, first.seed, [row for r in results for row in r.scores])

    return Job(jobs, join, [s.stop - s.start for s in parts])


def classify(
    limits: Limits, images: Images, samples: int | None, seed: int | None, top: int | None, model: str | None
) -> Job[Classified, Classified]:
    files = _files(images)
    model = model or limits.default_conditional
    rows = _scored_images(limits, samples, model)
    parts = _image_spans(limits, files, rows)
    job_seed = _job_seed(seed)
    jobs = [calls.classify(files[s], samples, _seed(job_seed, i), top, model) for i, s in enumerate(parts)]
    return Job(jobs, Classified.joined, [s.stop - s.start for s in parts])


def sample(
    limits: Limits,
    n: int,
    seed: int | None,
    temperature: float | None,
    label: Labels,
    prior: str | None,
    model: str | None,
) -> Job[Generated, Generated]:
    rows = min(limits.limit("max_n", 256), _response_rows(limits, limits.image_values(model), 4))
    parts = spans([1] * n, rows)
    job_seed = _job_seed(seed)
    jobs = [
        calls.sample(s.stop - s.start, _seed(job_seed, i), temperature, _labels_for(label, s, n), prior, model)
        for i, s in enumerate(parts)
    ]
    return Job(jobs, _join_generated, [s.stop - s.start for s in parts])


def _join_generated(results: list[Generated]) -> Generated:
    first = results[0]
    return Generated(first.model, np.concatenate([r.images for r in results]), first.seed, first.prior)


class Progress:
    """A one-line progress bar on stderr: rows done of rows in all, requests done of requests."""

    def __init__(self, what: str, rows: Sequence[int], enabled: bool) -> None:
        self.what, self.rows, self.enabled, self.done = what, rows, enabled, 0

    def each(self, items: Sequence[T]) -> Iterator[T]:
        total = sum(self.rows)
        for i, item in enumerate(items):
            yield item
            self.done += self.rows[i]
            if self.enabled:
                bar = "#" * (30 * self.done // max(1, total))
                print(f"\r{self.what} [{bar:<30}] {self.done}/{total} rows", end="", file=sys.stderr, flush=True)
        if self.enabled:
            print(file=sys.stderr)

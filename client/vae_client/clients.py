"""Client and AsyncClient: one method per route, each a `Call` from client/vae_client/calls.py sent over httpx."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from types import TracebackType
from typing import Any, TypeVar

import httpx
import numpy as np
from numpy.typing import ArrayLike

from . import bulk, calls
from .calls import API_KEY_HEADER, Call, Labels
from .results import Classified, Encoding, Generated, Reconstruction, Scores
from .wire import Images, each_image

T = TypeVar("T")
R = TypeVar("R")
DEFAULT_TIMEOUT_S = 30.0


def _of_version(call: Call[T], version: str | None) -> Call[T]:
    """The call asking for that version of its model (the service's `version` parameter); as it is for None."""
    return call if version is None else replace(call, params=[*call.params, ("version", version)])


def _options(url: str, api_key: str | None, timeout: float | None) -> dict[str, Any]:
    return {"base_url": url, "headers": {API_KEY_HEADER: api_key} if api_key else {}, "timeout": timeout}


class Client:
    """The VAE service over HTTP: numpy arrays in and out, `.npy` on the wire where the route takes it.

    `api_key` is sent as X-API-Key (for a service started with VAE_API_KEY). Every error status raises
    ServiceError with the service's problem detail. Use it as a context manager, or call `close()`.
    Every method that takes `model` also takes `version`: that served version of it (during a roll-out with
    VAE_VERSION_POLICY=all, say) instead of the newest one.
    """

    def __init__(self, url: str, api_key: str | None = None, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        self._http = httpx.Client(**_options(url, api_key, timeout))
        self._limits: bulk.Limits | None = None

    def _send(self, call: Call[T], version: str | None = None) -> T:
        call = _of_version(call, version)
        return call.result(self._http.send(call.request(self._http)))

    def limits(self) -> bulk.Limits:
        """The service's limits on one request and its models' shapes (GET /models, asked once)."""
        if self._limits is None:
            self._limits = bulk.Limits.from_models(self._send(calls.models(None)))
        return self._limits

    def _run(self, job: bulk.Job[T, R], what: str, progress: bool, version: str | None = None) -> R:
        each = bulk.Progress(what, job.rows, progress).each(job.calls)
        return job.join([self._send(call, version) for call in each])

    def encode(
        self,
        images: Images,
        *,
        samples: int | None = None,
        seed: int | None = None,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
        progress: bool = False,
    ) -> Encoding:
        """q(z|x) of each image: mu and logvar [N, D]; with samples=k, also k draws of z per image [N, k, D].

        Any number of images: more than one request may carry go in several (request i draws with seed + i), and
        `progress` shows a bar on stderr. The same holds for decode, reconstruct, score and sample."""
        if len(each_image(images)) <= 1:
            return self._send(calls.encode(images, samples, seed, label, model), version)
        return self._run(bulk.encode(self.limits(), images, samples, seed, label, model), "encode", progress, version)

    def decode(
        self,
        z: ArrayLike,
        *,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Images [N, C, H, W] in [0, 1] decoded from latent vectors [N, D] (a conditional model needs label)."""
        if np.ndim(z) < 2 or len(z) <= 1:  # type: ignore[arg-type]
            return self._send(calls.decode(z, label, model), version)
        return self._run(bulk.decode(self.limits(), z, label, model), "decode", progress, version)

    def sample(
        self,
        n: int | None = None,
        *,
        seed: int | None = None,
        temperature: float | None = None,
        label: Labels = None,
        prior: str | None = None,
        model: str | None = None,
        version: str | None = None,
        progress: bool = False,
    ) -> Generated:
        """n images from the model's prior (`prior`: "fitted" or "standard"; the service's default when None)."""
        if n is None or n <= 1:
            return self._send(calls.sample(n, seed, temperature, label, prior, model), version)
        job = bulk.sample(self.limits(), n, seed, temperature, label, prior, model)
        return self._run(job, "sample", progress, version)

    def generate(
        self,
        labels: Labels,
        n: int | None = None,
        *,
        seed: int | None = None,
        temperature: float | None = None,
        prior: str | None = None,
        model: str | None = None,
        version: str | None = None,
    ) -> Generated:
        """n images of each label, label after label [len(labels) * n, C, H, W], from a conditional model."""
        return self._send(calls.generate(labels, n, seed, temperature, prior, model), version)

    def reconstruct(
        self,
        images: Images,
        *,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
        progress: bool = False,
    ) -> Reconstruction:
        """Each image encoded and decoded at z = mu, with its squared error."""
        if len(each_image(images)) <= 1:
            return self._send(calls.reconstruct(images, label, model), version)
        return self._run(bulk.reconstruct(self.limits(), images, label, model), "reconstruct", progress, version)

    def score(
        self,
        images: Images,
        *,
        samples: int | None = None,
        seed: int | None = None,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
        progress: bool = False,
    ) -> Scores:
        """Importance-weighted -log p(x) of each image, its ELBO terms and its percentile among held-out images."""
        if len(each_image(images)) <= 1:
            return self._send(calls.score(images, samples, seed, label, model), version)
        return self._run(bulk.score(self.limits(), images, samples, seed, label, model), "score", progress, version)

    def classify(
        self,
        images: Images,
        *,
        samples: int | None = None,
        seed: int | None = None,
        top: int | None = None,
        model: str | None = None,
        version: str | None = None,
        progress: bool = False,
    ) -> Classified:
        """The most probable labels of each image under a conditional model (the default conditional one), p(y|x)."""
        if len(each_image(images)) <= 1:
            return self._send(calls.classify(images, samples, seed, top, model), version)
        return self._run(bulk.classify(self.limits(), images, samples, seed, top, model), "classify", progress, version)

    def interpolate(
        self,
        images: Images | None = None,
        *,
        z: ArrayLike | None = None,
        steps: int | None = None,
        path: str | None = None,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
    ) -> np.ndarray:
        """`steps` images [steps, C, H, W] between two images or two latent vectors (z [2, D]), ends included."""
        return self._send(calls.interpolate(images, z, steps, path, label, model), version)

    def attribute(
        self,
        with_images: Images,
        without_images: Images,
        *,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
    ) -> np.ndarray:
        """An attribute vector [D]: mean posterior mean of the images with it minus that of those without."""
        return self._send(calls.attribute(with_images, without_images, label, model), version)

    def edit(
        self,
        images: Images,
        vector: ArrayLike | None = None,
        *,
        with_images: Images | None = None,
        without_images: Images | None = None,
        strengths: Sequence[float] | None = None,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
    ) -> np.ndarray:
        """Each image moved along an attribute vector (or one from the two sets): [N, strengths, C, H, W]."""
        return self._send(calls.edit(images, vector, with_images, without_images, strengths, label, model), version)

    def traverse(
        self,
        image: Images | None = None,
        *,
        dims: Sequence[int] | None = None,
        steps: int | None = None,
        extent: float | None = None,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
    ) -> np.ndarray:
        """[dims, steps, C, H, W]: each dimension moved from -extent to +extent (query `range`) around the prior
        mean, or around `image`'s posterior mean. Rows follow `dims`; without it, the service's ranking."""
        return self._send(calls.traverse(image, dims, steps, extent, label, model), version)

    def models(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        """GET /models (every loaded model), or GET /models/{name} (one in detail), as the JSON document."""
        return self._send(calls.models(name), version)

    def health(self) -> dict[str, Any]:
        """GET /health: liveness, readiness and the execution providers in use."""
        return self._send(calls.health())

    def ready(self) -> bool:
        """Whether every model is loaded and warmed up (GET /ready answers 200, not 503)."""
        return self._send(calls.ready())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient:
    """Client for asyncio: the same methods, awaited. Use it with `async with`, or call `aclose()`."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float | None = DEFAULT_TIMEOUT_S) -> None:
        self._http = httpx.AsyncClient(**_options(url, api_key, timeout))
        self._limits: bulk.Limits | None = None

    async def _send(self, call: Call[T], version: str | None = None) -> T:
        call = _of_version(call, version)
        return call.result(await self._http.send(call.request(self._http)))

    async def limits(self) -> bulk.Limits:
        """Client.limits."""
        if self._limits is None:
            self._limits = bulk.Limits.from_models(await self._send(calls.models(None)))
        return self._limits

    async def _run(self, job: bulk.Job[T, R], what: str, progress: bool, version: str | None = None) -> R:
        each = bulk.Progress(what, job.rows, progress).each(job.calls)
        return job.join([await self._send(call, version) for call in each])

    async def encode(
        self,
        images: Images,
        *,
        samples: int | None = None,
        seed: int | None = None,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
        progress: bool = False,
    ) -> Encoding:
        """Client.encode."""
        if len(each_image(images)) <= 1:
            return await self._send(calls.encode(images, samples, seed, label, model), version)
        return await self._run(
            bulk.encode(await self.limits(), images, samples, seed, label, model), "encode", progress
        )

    async def decode(
        self,
        z: ArrayLike,
        *,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
        progress: bool = False,
    ) -> np.ndarray:
        """Client.decode."""
        if np.ndim(z) < 2 or len(z) <= 1:  # type: ignore[arg-type]
            return await self._send(calls.decode(z, label, model), version)
        return await self._run(bulk.decode(await self.limits(), z, label, model), "decode", progress, version)

    async def sample(
        self,
        n: int | None = None,
        *,
        seed: int | None = None,
        temperature: float | None = None,
        label: Labels = None,
        prior: str | None = None,
        model: str | None = None,
        version: str | None = None,
        progress: bool = False,
    ) -> Generated:
        """Client.sample."""
        if n is None or n <= 1:
            return await self._send(calls.sample(n, seed, temperature, label, prior, model), version)
        job = bulk.sample(await self.limits(), n, seed, temperature, label, prior, model)
        return await self._run(job, "sample", progress, version)

    async def generate(
        self,
        labels: Labels,
        n: int | None = None,
        *,
        seed: int | None = None,
        temperature: float | None = None,
        prior: str | None = None,
        model: str | None = None,
        version: str | None = None,
    ) -> Generated:
        """Client.generate."""
        return await self._send(calls.generate(labels, n, seed, temperature, prior, model), version)

    async def reconstruct(
        self,
        images: Images,
        *,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
        progress: bool = False,
    ) -> Reconstruction:
        """Client.reconstruct."""
        if len(each_image(images)) <= 1:
            return await self._send(calls.reconstruct(images, label, model), version)
        return await self._run(
            bulk.reconstruct(await self.limits(), images, label, model), "reconstruct", progress, version
        )

    async def score(
        self,
        images: Images,
        *,
        samples: int | None = None,
        seed: int | None = None,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
        progress: bool = False,
    ) -> Scores:
        """Client.score."""
        if len(each_image(images)) <= 1:
            return await self._send(calls.score(images, samples, seed, label, model), version)
        return await self._run(
            bulk.score(await self.limits(), images, samples, seed, label, model), "score", progress, version
        )

    async def classify(
        self,
        images: Images,
        *,
        samples: int | None = None,
        seed: int | None = None,
        top: int | None = None,
        model: str | None = None,
        version: str | None = None,
        progress: bool = False,
    ) -> Classified:
        """Client.classify."""
        if len(each_image(images)) <= 1:
            return await self._send(calls.classify(images, samples, seed, top, model), version)
        job = bulk.classify(await self.limits(), images, samples, seed, top, model)
        return await self._run(job, "classify", progress, version)

    async def interpolate(
        self,
        images: Images | None = None,
        *,
        z: ArrayLike | None = None,
        steps: int | None = None,
        path: str | None = None,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
    ) -> np.ndarray:
        """Client.interpolate."""
        return await self._send(calls.interpolate(images, z, steps, path, label, model), version)

    async def attribute(
        self,
        with_images: Images,
        without_images: Images,
        *,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
    ) -> np.ndarray:
        """Client.attribute."""
        return await self._send(calls.attribute(with_images, without_images, label, model), version)

    async def edit(
        self,
        images: Images,
        vector: ArrayLike | None = None,
        *,
        with_images: Images | None = None,
        without_images: Images | None = None,
        strengths: Sequence[float] | None = None,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
    ) -> np.ndarray:
        """Client.edit."""
        return await self._send(
            calls.edit(images, vector, with_images, without_images, strengths, label, model), version
        )

    async def traverse(
        self,
        image: Images | None = None,
        *,
        dims: Sequence[int] | None = None,
        steps: int | None = None,
        extent: float | None = None,
        label: Labels = None,
        model: str | None = None,
        version: str | None = None,
    ) -> np.ndarray:
        """Client.traverse."""
        return await self._send(calls.traverse(image, dims, steps, extent, label, model), version)

    async def models(self, name: str | None = None, version: str | None = None) -> dict[str, Any]:
        """Client.models."""
        return await self._send(calls.models(name), version)

    async def health(self) -> dict[str, Any]:
        """Client.health."""
        return await self._send(calls.health())

    async def ready(self) -> bool:
        """Client.ready."""
        return await self._send(calls.ready())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

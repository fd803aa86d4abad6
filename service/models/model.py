"""One served model: its manifest, its graph runners, and the operations routes ask of it.

What the model can do is read from the manifest's declared graph I/O (does the decoder take a `label`? does the
encoder return a `logvar`?), so a new kind that follows the contract needs no new branch here. Arrays are float32
images [N, C, H, W] in [0, 1], latents [N, D], labels int64 [N].

An operation's images may be `Pixels` (uploads not decoded yet) and its result may be finished by `then`: both run
on the graph's worker thread, in one pass over the batch the request shares (service/engine/batching.py), so the
event loop neither decodes nor renders. A model owns its life: `service.models.loading.load` makes it,
`warm_up` runs it on contract inputs, `close` stops its runners.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeVar

import numpy as np

from vaeformat.errors import ManifestError
from vaeformat.estimates import OodTest
from vaeformat.manifest import Manifest
from vaeformat.pixels import PixelModel
from vaeformat.prior import FittedPrior

from ..engine.providers import GPU_PROVIDERS
from ..engine.runner import Feeds, Job, Outputs, Runner
from ..errors import InvalidInput, NotGenerative
from ..metrics import Metrics
from .labels import Label, Labels, LabelTable

PriorName = Literal["fitted", "standard"]
T = TypeVar("T")


class Pixels(Protocol):
    """Images decoded on demand: `array()` runs on the batch's worker thread."""

    def __len__(self) -> int: ...

    def array(self) -> np.ndarray: ...  # float32 [N, C, H, W] in [0, 1]


Images = np.ndarray | Pixels


def _same(value: T) -> T:
    return value


def _pixels(images: Images) -> np.ndarray:
    return images if isinstance(images, np.ndarray) else images.array()


class ImageFeeds:
    """An image graph call's feeds, made on the batch's worker thread: the images decoded, with their labels.

    `many` makes a whole batch's at once, so that pixels that can be decoded together (`many` on their own class:
    uploaded PNGs, service/http/uploads.py) are, in one pass.
    """

    def __init__(self, images: Images, label: np.ndarray | None) -> None:
        self.images = images
        self.label = label
        self.names = ("image", "label") if label is not None else ("image",)

    def __call__(self) -> Feeds:
        return self.with_pixels(_pixels(self.images))

    def with_pixels(self, pixels: np.ndarray) -> Feeds:
        feeds = {"image": np.ascontiguousarray(pixels, dtype=np.float32)}
        if self.label is not None:
            feeds["label"] = self.label
        return feeds

    @staticmethod
    def many(items: list[ImageFeeds]) -> list[Feeds]:
        kinds = {type(item.images) for item in items}
        decode_many = getattr(kinds.pop(), "many", None) if len(kinds) == 1 else None
        if decode_many is None:
            return [item() for item in items]
        return [item.with_pixels(p) for item, p in zip(items, decode_many([i.images for i in items]), strict=True)]


@dataclass(frozen=True)
class Encoding:
    mu: np.ndarray  # [N, D]
    logvar: np.ndarray | None  # [N, D]; None for a deterministic encoder
    z: np.ndarray | None = None  # [N, k, D] draws from q(z|x), when asked for


@dataclass(frozen=True)
class Decoding:
    images: np.ndarray  # [N, C, H, W] in [0, 1]
    labels: np.ndarray | None  # int64 [N] label indices; None for an unconditional decoder


@dataclass(frozen=True)
class Sampled:
    images: np.ndarray  # [N, C, H, W] in [0, 1]
    labels: np.ndarray | None  # int64 [N]
    prior: PriorName  # the prior drawn from


@dataclass(frozen=True)
class Reconstruction:
    inputs: np.ndarray  # [N, C, H, W], the images as the encoder saw them
    images: np.ndarray  # [N, C, H, W], decoded at z = mu
    errors: np.ndarray  # [N], sum of squared pixel errors
    labels: np.ndarray | None


class ServedModel:
    """A loaded, validated model; every method raises a ServiceError for a request it cannot serve."""

    def __init__(
        self,
        manifest: Manifest,
        folder: Path,
        encoder: Runner,
        decoder: Runner,
        chain: Runner,
        metrics: Metrics,
        fitted_prior: FittedPrior | None = None,
        pixels: PixelModel | None = None,
    ) -> None:
        self.manifest = manifest
        self.folder = folder
        self.encoder = encoder
        self.decoder = decoder
        self.chain = chain  # encoder -> decoder in one call, z = mu kept on the device (service/engine/chain.py)
        self._images = metrics.images_produced.labels(model=manifest.name, version=manifest.version)
        files = manifest.files
        self.encoder_takes_label = files.encoder.input("label") is not None
        self.decoder_takes_label = files.decoder.input("label") is not None
        self.has_posterior = files.encoder.output("logvar") is not None  # q(z|x) is a distribution
        self.has_prior = manifest.stochastic  # trained against N(0, I), so the prior can be sampled
        self.fitted_prior = fitted_prior  # a Gaussian mixture over posterior means (vaeformat/prior.py), if fitted
        self.can_sample = self.has_prior or fitted_prior is not None
        self.default_prior: PriorName = "fitted" if fitted_prior is not None else "standard"
        self.labels = LabelTable(manifest.name, manifest.kind, manifest.labels, self.decoder_takes_label)
        ood = manifest.metrics.ood
        self.ood_test = OodTest(ood) if ood is not None else None  # /score's out-of-distribution test, if fitted
        self.pixels = pixels  # the test's pixel model (vaeformat/pixels.py), when its features use one
        # Every answer names the model and version that made it: behind a load balancer, during a roll-out,
        # a client can tell which one answered.
        self.reply_headers = {"X-Model": manifest.name, "X-Model-Version": manifest.version}

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def conditional(self) -> bool:
        return self.decoder_takes_label

    @property
    def class_names(self) -> list[str]:
        return self.labels.names

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the model's images."""
        image = self.manifest.image
        return image.channels, image.height, image.width

    @property
    def encoder_outputs(self) -> list[str]:
        return ["mu", "logvar"] if self.has_posterior else ["mu"]

    # --- graph calls ------------------------------------------------------------------------------------------

    async def encode(
        self,
        images: Images,
        labels: Labels = None,
        *,
        samples: int = 0,
        rng: np.random.Generator | None = None,
        then: Callable[[Encoding], T] = _same,  # type: ignore[assignment]
    ) -> T:
        """q(z|x) for images [N, C, H, W]: mu (and logvar) [N, D], and `samples` draws of z [N, k, D] from `rng`.

        Checked before the graph runs: labels (required when the encoder takes them; 409 for a model that takes
        none), and that q(z|x) is a distribution when draws are asked for (409 for an ae).
        """
        if samples:
            self.require_posterior()
        n = len(images)
        resolved = self.labels.resolve(labels, n, required=self.encoder_takes_label)
        feeds = ImageFeeds(images, resolved if self.encoder_takes_label else None)

        def finish(_: Feeds, out: Outputs) -> T:
            encoding = Encoding(mu=out[0], logvar=out[1] if self.has_posterior else None)
            if samples:
                z = self.posterior_draws(encoding, samples, rng or np.random.default_rng())
                encoding = Encoding(encoding.mu, encoding.logvar, z)
            return then(encoding)

        job = Job(n, self.encoder_outputs, feeds() if isinstance(images, np.ndarray) else feeds, finish, feeds.names)
        return await self.encoder.run(job)

    async def decode(self, z: np.ndarray, labels: Labels = None) -> np.ndarray:
        """Mean of p(x|z) for latents [N, D] (+ labels, required for a conditional decoder): images in [0, 1]."""
        return (await self.decode_labelled(z, labels)).images

    async def decode_labelled(
        self,
        z: np.ndarray,
        labels: Labels = None,
        then: Callable[[Decoding], T] = _same,  # type: ignore[assignment]
    ) -> T:
        """As `decode`, with the label indices the images were decoded at (what a response names)."""
        resolved = self.labels.resolve(labels, len(z), required=True)
        feeds = {"z": np.ascontiguousarray(z, dtype=np.float32)}
        if resolved is not None:
            feeds["label"] = resolved

        def finish(_: Feeds, out: Outputs) -> T:
            if not np.isfinite(out[0]).all():  # finite latents so large that the decoder's float32 overflows
                largest = float(np.abs(feeds["z"]).max(initial=0.0))
                raise InvalidInput(
                    f"the decoder's output is not finite for these latents: values as large as {largest:.3g} overflow "
                    "its float32 arithmetic; this model's latents lie near N(0, I)"
                )
            return then(Decoding(self._produced(out[0]), resolved))

        return await self.decoder.run(Job(len(z), ["image"], feeds, finish))

    async def sample(
        self,
        n: int,
        rng: np.random.Generator,
        temperature: float,
        labels: Sequence[Label] | None,
        prior: PriorName | None = None,
        then: Callable[[Sampled], T] = _same,  # type: ignore[assignment]
    ) -> T:
        """n images from a prior (one label for all, or one per image), with their labels and the prior used."""
        chosen = self.require_prior(prior)
        resolved = self.labels.resolve(labels, n, required=True)
        z = self.prior_draws(n, rng, temperature, chosen, resolved)
        return await self.decode_labelled(z, resolved, lambda d: then(Sampled(d.images, d.labels, chosen)))

    async def reconstruct(
        self,
        images: Images,
        labels: Sequence[Label] | None = None,
        then: Callable[[Reconstruction], T] = _same,  # type: ignore[assignment]
    ) -> T:
        """Decode each image's mu: reconstructions [N, C, H, W] and the sum of squared errors [N] per image."""
        n = len(images)
        resolved = self.labels.resolve(labels, n, required=self.encoder_takes_label or self.decoder_takes_label)
        feeds = ImageFeeds(images, resolved)

        def finish(inputs: Feeds, out: Outputs) -> T:
            recon = self._produced(out[0])
            errors = ((recon - inputs["image"]) ** 2).reshape(len(recon), -1).sum(axis=1)
            return then(Reconstruction(inputs["image"], recon, errors, resolved))

        job = Job(n, ["image"], feeds() if isinstance(images, np.ndarray) else feeds, finish, feeds.names)
        return await self.chain.run(job)

    def _produced(self, images: np.ndarray) -> np.ndarray:
        """The decoder's output as served: counted, and clipped to [0, 1] in place (the rows are this request's
        own: a batch's output is sliced, never shared, between requests)."""
        self._images.inc(len(images))
        return np.clip(images, 0.0, 1.0, out=images if images.flags.writeable else None)

    # --- randomness (drawn here, never inside a graph) --------------------------------------------------------

    def require_posterior(self) -> None:
        """NotGenerative (409) unless q(z|x) is a distribution that z can be drawn from."""
        if not self.has_posterior:
            raise NotGenerative(
                f"model {self.name!r} is a deterministic autoencoder (kind {self.manifest.kind!r}): its code is a "
                "point, not a distribution, so there is nothing to draw z from; omit 'samples' or use a vae"
            )

    def posterior_draws(self, encoding: Encoding, k: int, rng: np.random.Generator) -> np.ndarray:
        """z = mu + exp(logvar / 2) * eps, k draws per image: [N, k, D]."""
        self.require_posterior()
        assert encoding.logvar is not None
        eps = rng.standard_normal((encoding.mu.shape[0], k, encoding.mu.shape[1]), dtype=np.float32)
        return encoding.mu[:, None, :] + np.exp(0.5 * encoding.logvar)[:, None, :] * eps

    def require_prior(self, prior: PriorName | None = None) -> PriorName:
        """The prior to sample (`prior`, else the model's default); NotGenerative (409) when the model lacks it."""
        chosen = prior or self.default_prior
        fit = f"fit one with `python -m training fit-prior models/{self.name}` and restart the service"
        if not self.can_sample:
            raise NotGenerative(
                f"model {self.name!r} is a deterministic autoencoder (kind {self.manifest.kind!r}) without a fitted "
                f"prior: it was not trained against a prior, so it has no distribution to sample from; {fit}, "
                "sample from a vae or cvae model instead (see GET /models), or decode latents you chose with "
                "POST /decode"
            )
        if chosen == "fitted" and self.fitted_prior is None:
            raise NotGenerative(f"model {self.name!r} has no fitted prior: {fit}, or ask for prior=standard")
        if chosen == "standard" and not self.has_prior:
            raise NotGenerative(
                f"model {self.name!r} is a deterministic autoencoder (kind {self.manifest.kind!r}): it was not "
                "trained against N(0, I), so it has no standard prior to sample from; ask for prior=fitted (its "
                "fitted mixture), or sample from a vae or cvae model (see GET /models)"
            )
        return chosen

    def prior_draws(
        self,
        n: int,
        rng: np.random.Generator,
        temperature: float,
        prior: PriorName | None = None,
        labels: np.ndarray | None = None,
    ) -> np.ndarray:
        """z [n, D] from the standard prior N(0, temperature^2 I), or from the fitted mixture (per class `labels`),
        each component's spread scaled by `temperature` around its mean."""
        chosen = self.require_prior(prior)
        if chosen == "fitted":
            assert self.fitted_prior is not None
            return self.fitted_prior.draw(n, rng, temperature, labels)
        return temperature * rng.standard_normal((n, self.manifest.latent_dim), dtype=np.float32)

    # --- life -------------------------------------------------------------------------------------------------

    def capabilities(self) -> dict[str, bool]:
        return {
            "encode": True,
            "encode_samples": self.has_posterior,
            "decode": True,
            "reconstruct": True,
            "sample": self.can_sample,
            "generate": self.can_sample and self.conditional,
            "score": True,
        }

    def warm_up(self, buckets: Literal["auto", "all", "none"], where: Path) -> None:
        """Run every graph on contract inputs and check the shapes the service reads; ManifestError names `where`.

        Both graphs run once at a batch of every class index (at least 2 rows, so a graph whose batch axis is
        secretly fixed fails here, not on a user's request). Then, on a GPU (`auto`) or when asked (`all`), every
        batch size the batchers can produce, so no user request meets a shape for the first time (cuDNN's algorithm
        search costs up to seconds per new shape); the CPU provider meets a new shape for a few ms at most, once.
        """
        m = self.manifest
        rows = max(2, len(self.class_names))
        if buckets == "auto":
            buckets = "all" if self.decoder.providers[0] in GPU_PROVIDERS else "none"
        try:
            encoder_feeds, decoder_feeds = self._contract_feeds(rows)
            encoded = self.encoder.run_sync(self.encoder_outputs, encoder_feeds)
            (decoded,) = self.decoder.run_sync(["image"], decoder_feeds)
            for size in self.encoder.batch_sizes if buckets == "all" else ():
                self.encoder.run_sync(self.encoder_outputs, self._contract_feeds(size)[0])
            for size in self.decoder.batch_sizes if buckets == "all" else ():
                self.decoder.run_sync(["image"], self._contract_feeds(size)[1])
            for size in (rows, *(self.chain.batch_sizes if buckets == "all" else ())):
                encoder_feeds, decoder_feeds = self._contract_feeds(size)
                self.chain.run_sync(["image"], {**encoder_feeds, **decoder_feeds})
        except Exception as e:  # onnxruntime's own error types: a graph that cannot run on contract inputs
            classes = f", label indices 0..{rows - 1} for the classes in field 'labels'" if self.conditional else ""
            memory = (
                "; the GPU memory ceiling per session may be too low for this graph: raise VAE_CUDA_MEMORY_LIMIT_MB "
                "(or 0 for none)"
                if "allocat" in str(e).lower() or "out of memory" in str(e).lower()
                else ""
            )
            raise ManifestError(
                f"{where}: warm-up run on contract inputs ({rows} rows{classes}) failed: {type(e).__name__}: {e}"
                f"{memory}"
            ) from None
        image = (m.image.channels, m.image.height, m.image.width)
        expected: dict[str, tuple[int, ...]] = {
            f"encoder output '{n}'": (rows, m.latent_dim) for n in self.encoder_outputs
        }
        expected["decoder output 'image'"] = (rows, *image)
        for (what, want), got in zip(expected.items(), [*encoded, decoded], strict=True):
            if tuple(got.shape) != want:
                raise ManifestError(
                    f"{where}: {what} has shape {list(got.shape)} for {rows} rows; image and latent_dim imply "
                    f"{list(want)}"
                )

    def _contract_feeds(self, rows: int) -> tuple[Feeds, Feeds]:
        """Encoder and decoder feeds of `rows` zero rows, with label indices cycling through the classes."""
        m = self.manifest
        labels = np.arange(rows, dtype=np.int64) % max(1, len(self.class_names))
        encoder: Feeds = {"image": np.zeros((rows, m.image.channels, m.image.height, m.image.width), np.float32)}
        decoder: Feeds = {"z": np.zeros((rows, m.latent_dim), np.float32)}
        if self.encoder_takes_label:
            encoder["label"] = labels
        if self.decoder_takes_label:
            decoder["label"] = labels
        return encoder, decoder

    async def close(self) -> None:
        """Stop the model's runners: requests still queued on its graphs get a 503."""
        for runner in (self.encoder, self.decoder, self.chain):
            await runner.close()

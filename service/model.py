"""One served model: its manifest, its two graph runners, and the operations the routes ask for.

What the model can do is read from the manifest's declared graph I/O (does the decoder take a `label`? does
the encoder return a `logvar`?), so a new kind that follows the contract needs no new branch here. Arrays are
float32 images [N, C, H, W] in [0, 1], latents [N, D], labels int64 [N].
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vaeformat.manifest import Manifest
from vaeformat.prior import FittedPrior

from .errors import InvalidInput, LabelRequired, NotConditional, NotGenerative
from .metrics import Metrics
from .reports import report_url
from .runner import Runner

Label = int | str
# Labels as a request gives them (class names or indices; one for all rows, or one per row), or int64 indices
# [N] that `labels_for` already resolved.
Labels = Sequence[Label] | np.ndarray | None
PriorName = Literal["fitted", "standard"]

# A label index as text: ASCII digits only (str.isdigit() also takes '²' and '①', which int() refuses) and few of
# them (int() of a 5,000-digit string raises, and no model has a billion classes).
_INDEX = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class Encoding:
    mu: np.ndarray  # [N, D]
    logvar: np.ndarray | None  # [N, D]; None for a deterministic encoder
    z: np.ndarray | None = None  # [N, k, D] draws from q(z|x), when asked for


@dataclass(frozen=True)
class Decoding:
    images: np.ndarray  # [N, C, H, W] in [0, 1]
    labels: np.ndarray | None  # int64 [N] label indices; None for an unconditional decoder


class ServedModel:
    """A loaded, validated model; every method raises a ServiceError for a request it cannot serve."""

    def __init__(
        self,
        manifest: Manifest,
        folder: Path,
        encoder: Runner,
        decoder: Runner,
        metrics: Metrics,
        chain: Runner,
        fitted_prior: FittedPrior | None = None,
    ) -> None:
        self.manifest = manifest
        self.folder = folder
        self.encoder = encoder
        self.decoder = decoder
        self.chain = chain  # encoder -> decoder in one call, z = mu kept on the device (runner.ChainRunner)
        self._images = metrics.images_produced.labels(model=manifest.name)
        files = manifest.files
        self.encoder_takes_label = files.encoder.input("label") is not None
        self.decoder_takes_label = files.decoder.input("label") is not None
        self.has_posterior = files.encoder.output("logvar") is not None  # q(z|x) is a distribution
        self.has_prior = manifest.stochastic  # trained against N(0, I), so the prior can be sampled
        self.fitted_prior = fitted_prior  # a Gaussian mixture over posterior means (vaeformat/prior.py), if fitted
        self.can_sample = self.has_prior or fitted_prior is not None
        self.default_prior: PriorName = "fitted" if fitted_prior is not None else "standard"

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def conditional(self) -> bool:
        return self.decoder_takes_label

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest.labels or [])

    # --- labels -------------------------------------------------------------------------------------------

    def label_index(self, value: Label) -> int:
        """A class name from the manifest, or an index into it; names win when a string is both."""
        names = self.class_names
        if isinstance(value, str) and value in names:
            return names.index(value)
        if isinstance(value, int) and not isinstance(value, bool):
            index = value
        elif isinstance(value, str) and _INDEX.fullmatch(value.strip()):
            index = int(value.strip())  # safe: the pattern admits only what int() reads
        else:
            index = -1
        if not 0 <= index < len(names):
            shown = names if len(names) <= 20 else names[:20] + ["..."]
            given = value if not isinstance(value, str) or len(value) <= 40 else value[:40] + "..."
            raise InvalidInput(
                f"label {given!r} is not a class of model {self.name!r}: give an index 0..{len(names) - 1} "
                f"or a class name from {shown}"
            )
        return index

    def labels_for(self, labels: Labels, n: int, *, required: bool) -> np.ndarray | None:
        """Resolve labels to int64 [n] (one label is repeated for every row); None when not conditional."""
        if isinstance(labels, np.ndarray) and labels.dtype == np.int64 and labels.shape == (n,) and self.conditional:
            if n == 0 or (labels.min() >= 0 and labels.max() < len(self.class_names)):
                return labels  # indices already (from this method, or built from its result): checked in one pass
        if isinstance(labels, np.ndarray):
            labels = labels.tolist()  # indices from a caller: checked as any label is
        if labels is not None and not len(labels):
            labels = None
        if not self.conditional:
            if labels is not None:
                raise NotConditional(
                    f"model {self.name!r} is unconditional (kind {self.manifest.kind!r}): it takes no label; "
                    "drop the label, or use a conditional model (see GET /models)"
                )
            return None
        if labels is None:
            if required:
                raise LabelRequired(
                    f"model {self.name!r} is conditional: give a label (an index 0..{len(self.class_names) - 1} "
                    f"or a class name from {self.class_names})"
                )
            return None
        if len(labels) not in (1, n):
            raise InvalidInput(f"got {len(labels)} labels for {n} rows: give one label for all, or one per row")
        indices = np.array([self.label_index(v) for v in labels], dtype=np.int64)
        return np.broadcast_to(indices, (n,)).copy() if len(labels) == 1 else indices

    def label_names(self, indices: np.ndarray | None) -> list[str] | None:
        return None if indices is None else [self.class_names[i] for i in indices.tolist()]

    # --- graph calls --------------------------------------------------------------------------------------

    async def encode(
        self, images: np.ndarray, labels: Labels = None, *, samples: int = 0, rng: np.random.Generator | None = None
    ) -> Encoding:
        """q(z|x) for images [N, C, H, W]: mu (and logvar) [N, D], and `samples` draws of z [N, k, D] from `rng`.

        Checked before the graph runs: labels (required when the encoder takes them; 409 for a model that takes
        none), and that q(z|x) is a distribution when draws are asked for (409 for an ae).
        """
        if samples:
            self.require_posterior()
        resolved = self.labels_for(labels, len(images), required=self.encoder_takes_label)
        feeds = {"image": np.ascontiguousarray(images, dtype=np.float32)}
        if self.encoder_takes_label:
            assert resolved is not None
            feeds["label"] = resolved
        names = ["mu", "logvar"] if self.has_posterior else ["mu"]
        out = await self.encoder(names, feeds)
        encoding = Encoding(mu=out[0], logvar=out[1] if self.has_posterior else None)
        if not samples:
            return encoding
        z = self.posterior_draws(encoding, samples, rng or np.random.default_rng())
        return Encoding(encoding.mu, encoding.logvar, z)

    async def decode(self, z: np.ndarray, labels: Labels = None) -> np.ndarray:
        """Mean of p(x|z) for latents [N, D] (+ labels, required for a conditional decoder): images in [0, 1]."""
        return (await self.decode_labelled(z, labels)).images

    async def decode_labelled(self, z: np.ndarray, labels: Labels = None) -> Decoding:
        """As `decode`, with the label indices the images were decoded at (what a response names)."""
        resolved = self.labels_for(labels, len(z), required=True)
        feeds = {"z": np.ascontiguousarray(z, dtype=np.float32)}
        if resolved is not None:
            feeds["label"] = resolved
        (images,) = await self.decoder(["image"], feeds)
        return Decoding(self._produced(images), resolved)

    def _produced(self, images: np.ndarray) -> np.ndarray:
        """The decoder's output as served: counted, and clipped to [0, 1] in place (the rows are this request's
        own: a batch's output is sliced, never shared, between requests)."""
        self._images.inc(len(images))
        return np.clip(images, 0.0, 1.0, out=images if images.flags.writeable else None)

    # --- randomness (drawn here, never inside a graph) ----------------------------------------------------

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

    async def sample(
        self,
        n: int,
        rng: np.random.Generator,
        temperature: float,
        labels: Sequence[Label] | None,
        prior: PriorName | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, PriorName]:
        """n images from a prior (one label for all, or one per image): images, label indices, the prior used."""
        chosen = self.require_prior(prior)
        resolved = self.labels_for(labels, n, required=True)
        z = self.prior_draws(n, rng, temperature, chosen, resolved)
        return await self.decode(z, resolved), resolved, chosen

    async def reconstruct(
        self, images: np.ndarray, labels: Sequence[Label] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Decode each image's mu: reconstructions [N, C, H, W], sum of squared errors [N], label indices."""
        resolved = self.labels_for(labels, len(images), required=self.encoder_takes_label or self.decoder_takes_label)
        feeds = {"image": np.ascontiguousarray(images, dtype=np.float32)}
        if resolved is not None:
            feeds["label"] = resolved
        (recon,) = await self.chain(["image"], feeds)
        recon = self._produced(recon)
        errors = ((recon - images) ** 2).reshape(len(images), -1).sum(axis=1)
        return recon, errors, resolved

    # --- description --------------------------------------------------------------------------------------

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

    def summary(self) -> dict[str, Any]:
        """What GET /models lists for this model."""
        m = self.manifest
        return {
            "name": m.name,
            "version": m.version,
            "kind": m.kind,
            "description": m.description,
            "image": m.image.model_dump(),
            "latent_dim": m.latent_dim,
            "labels": m.labels,
            "likelihood": m.likelihood,
            "capabilities": self.capabilities(),
            "priors": (["fitted"] if self.fitted_prior is not None else []) + (["standard"] if self.has_prior else []),
            "default_prior": self.default_prior if self.can_sample else None,
            "providers": {"encoder": self.encoder.providers, "decoder": self.decoder.providers},
        }

    def details(self) -> dict[str, Any]:
        """What GET /models/{name} shows: the summary plus the manifest's measured figures and provenance."""
        m = self.manifest
        training = m.training.model_dump(mode="json")
        split = training.pop("split")
        split.pop("test_indices")  # thousands of integers; they stay in manifest.json
        training["split"] = split
        return {
            **self.summary(),
            "created": m.created,
            "encoder_conditioned": m.encoder_conditioned,
            "gaussian_sigma": m.gaussian_sigma,
            "metrics": m.metrics.model_dump(mode="json", exclude_none=True),
            "training": training,
            "files": {
                role: {
                    "path": g.path,
                    "sha256": g.sha256,
                    "inputs": [t.model_dump() for t in g.inputs],
                    "outputs": [t.model_dump() for t in g.outputs],
                }
                for role, g in (("encoder", m.files.encoder), ("decoder", m.files.decoder))
            },
            "reports": {key: {"path": path, "url": report_url(m.name, path)} for key, path in m.reports.items()},
            "prior": None if m.prior is None else m.prior.model_dump(),
        }

"""The model registry: the served models by name, the default ones, and the folders that were refused.

It stores and finds; the repository (service/models/repository.py) decides what it holds and is its only writer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from ..engine.providers import GPU_PROVIDERS, ProviderPlan
from ..errors import NotConditional, StartupError, UnknownModel
from ..settings import ModelSettings
from .model import ServedModel
from .versions import newest_first


@dataclass(frozen=True)
class Refused:
    folder: str  # relative to the models folder
    reason: str


GENERATE = "generate a given label"  # what a conditional model is asked for, unless a caller says otherwise


class ModelRegistry:
    """Loaded models by name, the default ones (any route; /generate), and the folders that were refused."""

    def __init__(
        self,
        models: dict[str, ServedModel],
        default: str,
        refused: list[Refused],
        plan: ProviderPlan,
        default_conditional: str | None = None,
    ) -> None:
        self.models = models  # name -> the newest served version: what a request without `version` reaches
        self.versions: dict[str, dict[str, ServedModel]] = {n: {m.version: m} for n, m in models.items()}
        self.default = default
        self.default_conditional = default_conditional
        self.refused = refused
        self.plan = plan

    def choose_defaults(self, settings: ModelSettings) -> None:
        """Choose the default models again, after a model was loaded or unloaded (service/models/repository.py)."""
        self.default = choose_default(self.models, settings.default_model)
        self.default_conditional = choose_default_conditional(self.models, settings.default_conditional_model)

    def get(self, name: str | None = None, version: str | None = None) -> ServedModel:
        """The named model (its newest served version, or `version`), or the default one; UnknownModel (404)
        lists what is loaded."""
        model = self.models.get(name or self.default)
        if model is None:
            raise UnknownModel(f"no model named {name!r} is loaded; loaded models: {sorted(self.models)}")
        if version is None or version == model.version:
            return model
        found = self.versions[model.name].get(version)
        if found is None:
            served = newest_first(self.versions[model.name])
            raise UnknownModel(f"model {model.name!r} has no version {version!r} served; served versions: {served}")
        return found

    def get_conditional(self, name: str | None = None, version: str | None = None, task: str = GENERATE) -> ServedModel:
        """The named model if it is conditional, else the default conditional one; 409 when there is none (`task`:
        what the caller wanted a conditional model for, in the message)."""
        if name is not None:
            model = self.get(name, version)
            if not model.conditional:
                raise NotConditional(
                    f"model {name!r} is unconditional (kind {model.manifest.kind!r}): it cannot {task}; "
                    f"conditional models here: {self.conditional_names or 'none'}"
                )
            return model
        if self.default_conditional is None:
            raise NotConditional(
                f"no conditional model is loaded (loaded: {sorted(self.models)}); train and export a cvae to {task}"
            )
        return self.get(self.default_conditional, version)

    @property
    def conditional_names(self) -> list[str]:
        """Conditional models that can generate, in the order the default rule ranks them (see `ranked`)."""
        return [m.name for m in ranked(_conditional(self.models.values()), self.models)]

    @property
    def providers(self) -> dict[str, dict[str, list[str]]]:
        return {n: {"encoder": m.encoder.providers, "decoder": m.decoder.providers} for n, m in self.models.items()}

    @property
    def gpu(self) -> bool:
        """True when some session runs on a GPU provider (first in its list: the one that takes the nodes)."""
        return any(active[0] in GPU_PROVIDERS for graphs in self.providers.values() for active in graphs.values())

    def served(self) -> list[ServedModel]:
        """Every served version of every model."""
        return [m for versions in self.versions.values() for m in versions.values()]

    async def close(self) -> None:
        """Stop every model's runners (queued requests get a 503)."""
        for model in self.served():
            await model.close()

    def add(self, model: ServedModel) -> None:
        """Serve `model` under its name and version (the repository keeps the defaults valid)."""
        self.versions.setdefault(model.name, {})[model.version] = model
        self._newest(model.name)

    def remove(self, name: str, version: str | None = None) -> ServedModel:
        """Stop looking up `name` (its newest version, or `version`); the caller closes its graphs once its
        requests in flight are done."""
        versions = self.versions[name]
        model = versions.pop(version if version is not None else self.models[name].version)
        self._newest(name)
        return model

    def _newest(self, name: str) -> None:
        versions = self.versions.get(name)
        if versions:
            self.models[name] = versions[newest_first(versions)[0]]
        else:
            self.versions.pop(name, None)
            self.models.pop(name, None)

    def refuse(self, folder: str, reason: str) -> None:
        """List `folder` as refused, for `reason` (replacing an earlier reason)."""
        self.refused = [r for r in self.refused if r.folder != folder] + [Refused(folder, reason)]

    def accept(self, folder: str) -> None:
        """`folder` loaded: no longer listed as refused."""
        self.refused = [r for r in self.refused if r.folder != folder]


def _bound(model: ServedModel) -> float:
    metrics = model.manifest.metrics
    value = metrics.iw_bound if metrics.iw_bound is not None else metrics.negative_elbo
    return float("inf") if value is None else value


def comparable(model: ServedModel) -> tuple[str, str, int, int, int]:
    """What two models must share for their held-out bounds to be compared: dataset, likelihood, image size.

    A bound is nats per image of one dataset under one likelihood: a Gaussian model's density on continuous
    pixels (often negative) and a Bernoulli model's probability of binary pixels are different quantities.
    """
    m = model.manifest
    return (m.training.dataset, m.likelihood, m.image.channels, m.image.height, m.image.width)


def ranked(candidates: Iterable[ServedModel], models: dict[str, ServedModel]) -> list[ServedModel]:
    """`candidates`, the default first: bounds are compared only among comparable models (`comparable`).

    Between groups of comparable models, the group with the most loaded models (of any kind) comes first, then
    the dataset's name; within a group, the lowest held-out bound, then the model's name. So a model of a new
    dataset, added beside several of another, does not take over the defaults, whatever its bound or its name.
    """
    sizes = Counter(comparable(m) for m in models.values())
    return sorted(candidates, key=lambda m: (-sizes[comparable(m)], comparable(m), _bound(m), m.name))


def _conditional(models: Iterable[ServedModel]) -> list[ServedModel]:
    return [m for m in models if m.conditional and m.has_prior]


def choose_default(models: dict[str, ServedModel], configured: str | None) -> str:
    """The configured default, else the first unconditional generative model by `ranked`, else the first name."""
    if configured:
        if configured not in models:
            raise StartupError(f"VAE_DEFAULT_MODEL={configured!r} is not loaded; loaded models: {sorted(models)}")
        return configured
    generative = [m for m in models.values() if m.has_prior and not m.conditional]
    if generative:
        return ranked(generative, models)[0].name
    return min(models)


def choose_default_conditional(models: dict[str, ServedModel], configured: str | None) -> str | None:
    """/generate's default: the configured one, else the first conditional model by `ranked`; None without one."""
    if configured:
        model = models.get(configured)
        if model is None:
            raise StartupError(
                f"VAE_DEFAULT_CONDITIONAL_MODEL={configured!r} is not loaded; loaded models: {sorted(models)}"
            )
        if not _conditional([model]):
            raise StartupError(
                f"VAE_DEFAULT_CONDITIONAL_MODEL={configured!r} is kind {model.manifest.kind!r}: it cannot generate "
                f"a given label; conditional models here: {[m.name for m in _conditional(models.values())] or 'none'}"
            )
        return configured
    candidates = ranked(_conditional(models.values()), models)
    return candidates[0].name if candidates else None

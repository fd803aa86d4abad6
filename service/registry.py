"""The model registry: load every `models/<name>/` folder, validate it, warm it up, and look models up by name.

A folder is served only if it and every file it names lie inside the models folder (symlinks resolved; see
manifest.py), its manifest validates, its declared I/O follows the graph contract, its files match their sha256,
each session's real I/O matches the declaration, and a warm-up run returns the declared shapes. Otherwise it is
refused with a message naming the file (relative to the models folder) and the field, logged, and listed in /models;
whatever goes wrong in one folder refuses that folder only.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vaeformat.contract import check_contract
from vaeformat.errors import ManifestError
from vaeformat.files import MANIFEST_FILE, confined, shown
from vaeformat.manifest import load_manifest, verify_files
from vaeformat.prior import load_prior

from .batching import MicroBatcher
from .errors import NotConditional, StartupError, UnknownModel
from .graphs import check_io, open_session
from .memory import release_freed_memory
from .metrics import Metrics
from .model import ServedModel
from .providers import GPU_PROVIDERS, ProviderPlan, check, probe
from .runner import ChainRunner, GraphRunner, Runner
from .settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refused:
    folder: str  # relative to the models folder
    reason: str


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
        self.models = models
        self.default = default
        self.default_conditional = default_conditional
        self.refused = refused
        self.plan = plan

    def choose_defaults(self, settings: Settings) -> None:
        """Choose the default models again, after a model was loaded or unloaded (service/repository.py)."""
        self.default = choose_default(self.models, settings.default_model)
        self.default_conditional = choose_default_conditional(self.models, settings.default_conditional_model)

    def get(self, name: str | None = None) -> ServedModel:
        """The named model, or the default one; UnknownModel (404) lists what is loaded."""
        model = self.models.get(name or self.default)
        if model is None:
            raise UnknownModel(f"no model named {name!r} is loaded; loaded models: {sorted(self.models)}")
        return model

    def get_conditional(self, name: str | None = None) -> ServedModel:
        """The named model if it is conditional, else the default conditional one; 409 when there is none."""
        if name is not None:
            model = self.get(name)
            if not model.conditional:
                raise NotConditional(
                    f"model {name!r} is unconditional (kind {model.manifest.kind!r}): it cannot generate a given "
                    f"label; conditional models here: {self.conditional_names or 'none'}"
                )
            return model
        if self.default_conditional is None:
            raise NotConditional(
                f"no conditional model is loaded (loaded: {sorted(self.models)}); "
                "train and export a cvae to generate given labels"
            )
        return self.models[self.default_conditional]

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

    async def close(self) -> None:
        """Stop every graph's batcher (queued requests get a 503)."""
        for model in self.models.values():
            for runner in (model.encoder, model.decoder, model.chain):
                await runner.close()

    def add(self, model: ServedModel) -> None:
        """Serve `model` under its name (model control, service/repository.py, keeps the default valid)."""
        self.models[model.name] = model

    def remove(self, name: str) -> ServedModel:
        """Stop looking `name` up; the caller closes its graphs once its requests in flight are done."""
        return self.models.pop(name)


def _contract_feeds(model: ServedModel, rows: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Encoder and decoder feeds of `rows` zero rows, with label indices cycling through the classes."""
    m = model.manifest
    labels = np.arange(rows, dtype=np.int64) % max(1, len(model.class_names))
    encoder_feeds: dict[str, np.ndarray] = {
        "image": np.zeros((rows, m.image.channels, m.image.height, m.image.width), np.float32)
    }
    decoder_feeds: dict[str, np.ndarray] = {"z": np.zeros((rows, m.latent_dim), np.float32)}
    if model.encoder_takes_label:
        encoder_feeds["label"] = labels
    if model.decoder_takes_label:
        decoder_feeds["label"] = labels
    return encoder_feeds, decoder_feeds


def _warm_up(model: ServedModel, path: Path, buckets: str) -> None:
    # Run both graphs once, at a batch of every class index (at least 2 rows, so a graph whose batch axis
    # is secretly fixed fails here, not on a user's request), and check the shapes of what the service reads.
    m = model.manifest
    rows = max(2, len(model.class_names))
    image = (m.image.channels, m.image.height, m.image.width)
    encoder_feeds, decoder_feeds = _contract_feeds(model, rows)
    encoder_outputs = ["mu", "logvar"] if model.has_posterior else ["mu"]
    try:
        encoded = model.encoder.run_sync(encoder_outputs, encoder_feeds)
        (decoded,) = model.decoder.run_sync(["image"], decoder_feeds)
        # Then, on a GPU, every batch size the batchers can produce, so no user request meets a shape for the first
        # time (cuDNN's algorithm search costs up to seconds per new shape). The CPU provider meets a new shape
        # for a few ms at most, once; warming its buckets took about 0.3 s of the four shipped models' start.
        if buckets == "auto":
            buckets = "all" if model.decoder.providers[0] in GPU_PROVIDERS else "none"
        for size in model.encoder.batch_sizes if buckets == "all" else ():
            model.encoder.run_sync(encoder_outputs, _contract_feeds(model, size)[0])
        for size in model.decoder.batch_sizes if buckets == "all" else ():
            model.decoder.run_sync(["image"], _contract_feeds(model, size)[1])
        for size in (rows, *(model.chain.batch_sizes if buckets == "all" else ())):
            encoder_feeds, decoder_feeds = _contract_feeds(model, size)
            model.chain.run_sync(["image"], {**encoder_feeds, **decoder_feeds})
    except Exception as e:  # onnxruntime's own error types: a graph that cannot run on contract inputs
        classes = f", label indices 0..{rows - 1} for the classes in field 'labels'" if model.conditional else ""
        memory = (
            "; the GPU memory ceiling per session may be too low for this graph: raise VAE_CUDA_MEMORY_LIMIT_MB "
            "(or 0 for none)"
            if "allocat" in str(e).lower() or "out of memory" in str(e).lower()
            else ""
        )
        raise ManifestError(
            f"{path}: warm-up run on contract inputs ({rows} rows{classes}) failed: {type(e).__name__}: {e}{memory}"
        ) from None
    expected: dict[str, tuple[int, ...]] = {f"encoder output '{n}'": (rows, m.latent_dim) for n in encoder_outputs}
    expected["decoder output 'image'"] = (rows, *image)
    for (what, want), got in zip(expected.items(), [*encoded, decoded], strict=True):
        if tuple(got.shape) != want:
            raise ManifestError(
                f"{path}: {what} has shape {list(got.shape)} for {rows} rows; image and latent_dim imply {list(want)}"
            )


def _runner(runner: GraphRunner, settings: Settings) -> Runner:
    if not settings.batching:
        return runner
    return MicroBatcher(
        runner,
        max_rows=settings.max_batch_rows,
        max_delay=settings.max_batch_delay_ms / 1000,
        capacity=settings.queue_capacity,
        deadline=settings.request_deadline_ms / 1000,
    )


def load_model(
    folder: Path, plan: ProviderPlan, settings: Settings, executor: Executor, metrics: Metrics
) -> ServedModel:
    """Validate and load one model folder of `settings.models_dir`; ManifestError names the file and the field.

    Messages show paths relative to the models folder; sessions open the resolved files that were hashed.
    """
    root = settings.models_dir
    where = Path(shown(folder, root))  # what messages show: relative to the models folder
    if confined(folder, root.resolve(), str(where)) == root.resolve():
        raise ManifestError(f"{where}: a symlink to the models folder itself; a model folder must be a sub-folder")
    manifest = load_manifest(folder, root)
    check_contract(where, manifest)
    paths = verify_files(folder, manifest, root)
    fitted_prior = load_prior(folder, manifest, root)
    runners: dict[str, Runner] = {}
    sessions = {}
    for role, path in paths.items():
        graph_file = getattr(manifest.files, role)
        shown_path = where / graph_file.path
        session = sessions[role] = open_session(path, plan.active, settings)
        check_io(session, graph_file, role, shown_path, classes=len(manifest.labels or []))
        check(settings.providers, session.get_providers(), require_gpu=settings.require_gpu, what=str(shown_path))
        graph = GraphRunner(session, model=manifest.name, graph=role, executor=executor, metrics=metrics)
        runners[role] = _runner(graph, settings)
    chain = ChainRunner(
        sessions["encoder"],
        sessions["decoder"],
        model=manifest.name,
        executor=executor,
        metrics=metrics,
        device_id=settings.cuda_device,
    )
    model = ServedModel(
        manifest,
        folder,
        runners["encoder"],
        runners["decoder"],
        metrics,
        chain=_runner(chain, settings),
        fitted_prior=fitted_prior,
    )
    _warm_up(model, where / MANIFEST_FILE, settings.warm_buckets)
    for role, runner in runners.items():
        metrics.model_info.labels(
            model=manifest.name, kind=manifest.kind, version=manifest.version, graph=role, provider=runner.providers[0]
        ).set(1)
    return model


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


def model_folders(root: Path) -> list[Path]:
    """The sub-folders of the models folder (following symlinks), except hidden and '_'-prefixed ones."""
    try:
        entries = sorted(root.iterdir())
    except OSError as e:
        raise StartupError(f"models directory {str(root)!r} cannot be listed ({e.strerror or e})") from None
    return [p for p in entries if not p.name.startswith((".", "_")) and _maybe_dir(p)]


def _maybe_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # e.g. permission denied on stat(): try it, so that it is refused with the reason
        return True


def without_root(message: str, root: Path) -> str:
    """`message` with the models folder's absolute path taken out of the paths it quotes (onnxruntime's do)."""
    for prefix in sorted({str(root.resolve()), str(root.absolute())}, key=len, reverse=True):
        message = message.replace(prefix + "/", "")
    return message


def load_registry(settings: Settings, executor: Executor, metrics: Metrics) -> ModelRegistry:
    """Load every model folder under `settings.models_dir`; StartupError when nothing (or a required GPU) is there."""
    root = settings.models_dir
    if not root.is_dir():
        raise StartupError(f"models directory {str(root)!r} does not exist; set VAE_MODELS_DIR or --models-dir")
    plan = probe(settings.providers)
    check(settings.providers, plan.active, require_gpu=settings.require_gpu, what="provider probe")
    models: dict[str, ServedModel] = {}
    refused: list[Refused] = []
    folders = model_folders(root)
    # Models load side by side: session creation and warm-up release the GIL, and on a GPU each session has its
    # own stream, so the warm-ups overlap. Results are taken in folder order, so names and logs do not depend on
    # which finished first.
    with ThreadPoolExecutor(
        max_workers=max(1, min(settings.load_threads, len(folders))), thread_name_prefix="load"
    ) as pool:
        loading = [pool.submit(load_model, folder, plan, settings, executor, metrics) for folder in folders]
    for folder, future in zip(folders, loading, strict=True):
        where = shown(folder, root)
        try:
            model = future.result()
            if model.name in models:
                raise ManifestError(
                    f"{where}/{MANIFEST_FILE}: field 'name' is {model.name!r}, already served from "
                    f"{shown(models[model.name].folder, root)}; give each model a unique name"
                )
        except StartupError:  # an operator's rule (VAE_REQUIRE_GPU, an explicit provider): not this folder's fault
            raise
        except Exception as e:  # ManifestError; anything else is a defect, but it must not cost the other models
            reason = without_root(str(e), root)
            if not isinstance(e, ManifestError):
                log.exception("unexpected error loading model folder %s", where)
                reason = f"{where}: could not be loaded ({type(e).__name__}: {reason})"
            log.error("refused model folder %s (in models directory %s): %s", where, root, reason)
            refused.append(Refused(folder=where, reason=reason))
            continue
        models[model.name] = model
        log.info(
            "loaded model %s (kind %s, version %s) from %s on encoder=%s decoder=%s",
            model.name,
            model.manifest.kind,
            model.manifest.version,
            folder,
            ",".join(model.encoder.providers),
            ",".join(model.decoder.providers),
        )
    if refused and settings.strict_models:
        raise StartupError(
            f"VAE_STRICT_MODELS=true and {len(refused)} model folder(s) were refused: "
            + " | ".join(r.reason for r in refused)
        )
    if not models:
        why = f"; refused: {' | '.join(r.reason for r in refused)}" if refused else ""
        raise StartupError(f"no model could be loaded from {str(root)!r}{why}")
    registry = ModelRegistry(models, min(models), refused, plan)
    registry.choose_defaults(settings)
    release_freed_memory()  # the graphs' parse buffers and the warm-ups' activations (service/memory.py)
    log.info(
        "serving %d model(s) %s; default %s, conditional default %s",
        len(models),
        sorted(models),
        registry.default,
        registry.default_conditional,
    )
    return registry

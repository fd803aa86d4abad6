"""The model repository (Triton's model repository API): load every model folder at start, then list the folders,
load or reload one, unload one, poll.

The registry (service/models/registry.py) looks models up; this module is the only one that changes what it holds.
`VAE_MODEL_CONTROL` picks the mode, as Triton's `--model-control-mode` does: `none` (the default: every folder is
loaded at start and the set never changes; load and unload are refused), `explicit` (load and unload on request),
`poll` (the folder is rescanned every `VAE_MODEL_POLL_S` seconds: new folders load, changed ones reload, removed
ones unload; load and unload requests are refused, as Triton refuses them while polling).

A load validates and warms the folder on a worker thread before it serves; a broken folder is refused with the
usual message and changes nothing else (a model it would have replaced keeps serving). An unload takes the model
out of the registry at once (new requests get 404) and closes its graphs only once its requests in flight are
done. The model a request names none of must stay loaded: unloading VAE_DEFAULT_MODEL,
VAE_DEFAULT_CONDITIONAL_MODEL or the last model is a 409.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vaeformat.errors import ManifestError
from vaeformat.files import MANIFEST_FILE, shown
from vaeformat.manifest import load_manifest

from ..engine.memory import release_freed_memory
from ..errors import CapabilityMissing, InvalidInput, ServiceError, StartupError, UnknownModel
from ..settings import ModelSettings
from .folders import (
    MAX_NAME_BYTES,
    check_layout,
    folder_key,
    is_folder_name,
    model_folders,
    stamp,
    versions_inside,
    without_root,
)
from .loading import Loader
from .model import ServedModel
from .registry import ModelRegistry, Refused
from .versions import newest_first, policy_reason, served_versions

log = logging.getLogger(__name__)

READY, UNAVAILABLE = "READY", "UNAVAILABLE"  # Triton's model states


class ControlRefused(CapabilityMissing):
    """A load or unload that the mode or the registry's state forbids (409)."""

    title = "Model control refused"
    slug = "model-control-refused"


class LoadFailed(ServiceError):
    """A model folder that was refused (400, as Triton answers a failed load); the reason names file and field."""

    status = 400
    title = "Model refused"
    slug = "model-refused"


class InFlight:
    """Requests in progress per served model object (not per name: a reload's old and new model differ)."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    @contextmanager
    def hold(self, model: ServedModel) -> Iterator[None]:
        self.enter(model)
        try:
            yield
        finally:
            self.leave(model)

    def enter(self, model: ServedModel) -> None:
        key = id(model)
        self._counts[key] = self._counts.get(key, 0) + 1

    def leave(self, model: ServedModel) -> None:
        key = id(model)
        self._counts[key] -= 1
        if not self._counts[key]:
            del self._counts[key]

    def count(self, model: ServedModel) -> int:
        return self._counts.get(id(model), 0)


@dataclass(frozen=True)
class FolderState:
    name: str  # the folder's name under the models folder
    version: str
    state: str  # READY or UNAVAILABLE
    reason: str


class ModelRepository:
    """Load, reload and unload model folders of the models folder in a running registry, one change at a time."""

    def __init__(self, registry: ModelRegistry, loader: Loader, in_flight: InFlight, request_deadline_s: float) -> None:
        self.registry = registry
        self.loader = loader
        self.settings: ModelSettings = loader.settings
        self.in_flight = in_flight
        self.request_deadline_s = request_deadline_s  # past it (and a margin) an unloaded model's graphs close
        self._lock = asyncio.Lock()
        self._unloaded: set[str] = set()  # folders unloaded on request: listed as UNAVAILABLE, "unloaded"
        self._stamps: dict[str, tuple[int, ...]] = {}  # folder -> file times when last loaded (poll mode)
        self._drains: set[asyncio.Task[None]] = set()
        for folder in model_folders(self.settings.models_dir):  # so that the first poll reloads nothing
            self._stamps[self._key(folder)] = stamp(folder)

    @classmethod
    def open(cls, loader: Loader, in_flight: InFlight, request_deadline_s: float) -> ModelRepository:
        """Load every model folder (blocking: call it off the event loop); StartupError when none can serve."""
        return cls(load_all(loader), loader, in_flight, request_deadline_s)

    # Folders are named by their path in the models folder (service/models/folders.py); load and unload requests
    # (what tritonclient's load_model and unload_model send) name a folder of the models folder, or a model.

    def _key(self, folder: Path) -> str:
        return folder_key(folder, self.settings.models_dir)

    def _served(self, key: str) -> ServedModel | None:
        return next((m for m in self.registry.served() if self._key(m.folder) == key), None)

    def index(self) -> list[FolderState]:
        """Every model folder, loaded (READY) or not (UNAVAILABLE, with the reason)."""
        refused = {r.folder: r.reason for r in self.registry.refused}
        states = []
        for path in model_folders(self.settings.models_dir):
            model = self._served(self._key(path))
            name = shown(path, self.settings.models_dir)  # a name that is not UTF-8 comes escaped
            if model is not None:  # listed under the name requests use (its folder's name loads and unloads it too)
                states.append(FolderState(model.name, model.version, READY, ""))
            else:
                reason = "unloaded" if self._key(path) in self._unloaded else refused.get(name, "not loaded")
                states.append(FolderState(name, "", UNAVAILABLE, reason))
        return states

    def _require_explicit(self, action: str) -> None:
        if self.settings.model_control != "explicit":
            raise ControlRefused(
                f"cannot {action} a model: model control is {self.settings.model_control!r} "
                "(VAE_MODEL_CONTROL=explicit allows load and unload requests)"
            )

    def _folder(self, name: str) -> Path:
        # The name is one path component, so a request cannot reach outside the models folder (loading also
        # resolves symlinks and refuses anything that leads out of it).
        if not is_folder_name(name):
            raise InvalidInput(
                f"{name[:80]!r} is not a model folder name: one path component of at most {MAX_NAME_BYTES} bytes "
                "of UTF-8, no control characters, not starting with '.' or '_'"
            )
        folder = self.settings.models_dir / name
        served = self.registry.models.get(name)
        if served is not None and not folder.is_dir():  # the name the index lists: its newest version's folder
            return served.folder
        try:
            found = folder.is_dir()
        except OSError:  # a name the file system refuses (too long for it, say): no such folder either
            found = False
        if not found:
            raise UnknownModel(f"no model folder {name!r} in the models directory")
        return folder

    async def load(self, name: str) -> ServedModel:
        """Load (or reload) the folder `name` (each of its numbered version folders, in Triton's layout: the newest
        loaded one is returned); LoadFailed (the usual refusal) leaves everything as it was."""
        self._require_explicit("load")
        async with self._lock:
            folder = self._folder(name)
            versions = versions_inside(folder)
            if not versions:
                return await self._load(folder)
            loaded, failed = [], None
            for version in versions:
                try:
                    loaded.append(await self._load(version))
                except LoadFailed as e:
                    failed = e
            if not loaded and failed is not None:
                raise failed
            return loaded[-1]

    async def unload(self, name: str) -> None:
        """Stop serving the folder `name`; its graphs close once its requests in flight are done."""
        self._require_explicit("unload")
        async with self._lock:
            self._unload(name)

    async def _load(self, folder: Path) -> ServedModel:
        root = self.settings.models_dir
        where = shown(folder, root)  # the folder's name as messages and listings show it (escaped if not UTF-8)
        try:
            model = await asyncio.to_thread(self.loader.load, folder)
        except Exception as e:  # ManifestError, or a defect in loading: never the other models' problem
            reason = without_root(str(e), root)
            if not isinstance(e, ManifestError):
                log.exception("unexpected error loading model folder %s", where)
                reason = f"{where}: could not be loaded ({type(e).__name__}: {reason})"
            log.error("refused model folder %s: %s", where, reason)
            self.registry.refuse(where, reason)
            raise LoadFailed(reason) from None
        key = self._key(folder)
        clash = self.registry.versions.get(model.name, {}).get(model.version)
        if clash is not None and self._key(clash.folder) != key:
            reason = (
                f"{where}/{MANIFEST_FILE}: model {model.name!r} version {model.version!r} is already served from "
                f"{shown(clash.folder, root)}; give the manifest another 'version' to serve both, or another 'name'"
            )
            self.registry.refuse(where, reason)
            self._drain(model)
            raise LoadFailed(reason)
        old = self._served(key)
        if old is not None:
            self.registry.remove(old.name, old.version)
        self.registry.add(model)
        self.registry.accept(where)
        release_freed_memory()  # the new graphs' parse buffers (service/engine/memory.py)
        self._unloaded.discard(key)
        self._stamps[key] = stamp(folder)
        for version in set(self.registry.versions[model.name]) - served_versions(
            self.registry.versions[model.name], self.settings.version_policy
        ):
            dropped = self.registry.remove(model.name, version)
            self.registry.refuse(shown(dropped.folder, root), policy_reason(self.settings.version_policy))
            self._drain(dropped)
        self.registry.choose_defaults(self.settings)
        if old is not None:
            self._drain(old)
        log.info("loaded model %s (version %s) from %s", model.name, model.manifest.version, where)
        return model

    def _unload(self, name: str) -> None:
        """Unload the folder `name`, or every served version of the model `name`."""
        folder_model = self._served(name)
        if folder_model is not None:
            models = [folder_model]
        else:
            models = list(self.registry.versions.get(name, {}).values())
        if not models:
            raise UnknownModel(f"no model is loaded from folder {name!r}; loaded: {sorted(self.registry.models)}")
        model = models[0]
        last_version = len(self.registry.versions[model.name]) == len(models)
        for setting, configured in (
            ("VAE_DEFAULT_MODEL", self.settings.default_model),
            ("VAE_DEFAULT_CONDITIONAL_MODEL", self.settings.default_conditional_model),
        ):
            if model.name == configured and last_version:
                raise ControlRefused(f"model {model.name!r} is {setting}: it stays loaded")
        if len(self.registry.models) == 1 and last_version:
            raise ControlRefused(f"model {model.name!r} is the last one loaded: it stays loaded")
        for each in models:
            self.registry.remove(each.name, each.version)
            self._unloaded.add(self._key(each.folder))
            self._stamps.pop(self._key(each.folder), None)
            self._drain(each)
            log.info("unloading model %s version %s once its requests in flight are done", each.name, each.version)
        self.registry.choose_defaults(self.settings)

    def _drain(self, model: ServedModel) -> None:
        task = asyncio.get_running_loop().create_task(self._close_when_idle(model))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def _close_when_idle(self, model: ServedModel) -> None:
        # Requests that already hold the model finish on it; past the request deadline (plus a margin) nothing
        # legitimate can still be waiting, so the graphs close regardless.
        deadline = time.monotonic() + self.request_deadline_s + 5
        while time.monotonic() < deadline and (self.in_flight.count(model) or _busy(model)):
            await asyncio.sleep(0.01)
        await model.close()
        self._forget(model)

    def _forget(self, model: ServedModel) -> None:
        """Take the model's `vae_model_info` series out of /metrics, unless its successor has the same labels."""
        m = model.manifest
        for role, runner in (("encoder", model.encoder), ("decoder", model.decoder)):
            labels = (m.name, m.kind, m.version, role, runner.providers[0])
            now = self.registry.versions.get(model.name, {}).get(m.version)
            if now is not None and now.manifest.kind == m.kind:
                continue
            try:
                self.loader.metrics.model_info.remove(*labels)
            except KeyError:  # never set (a model refused for a name clash) or already gone
                pass

    async def poll_once(self) -> None:
        """Poll mode: load new folders, reload changed ones, unload removed ones (and serve again the versions that
        removed ones had pushed out)."""
        async with self._lock:
            folders = {self._key(p): p for p in model_folders(self.settings.models_dir)}
            present = {shown(p, self.settings.models_dir) for p in folders.values()}
            for gone in [r.folder for r in self.registry.refused if r.folder not in present]:
                self.registry.accept(gone)  # a refused folder that was removed is no longer listed
            for name in [self._key(m.folder) for m in self.registry.served()]:
                if name not in folders:
                    try:
                        self._unload(name)
                    except ControlRefused as e:  # the default or last model: it keeps serving from memory
                        log.warning("model folder %s is gone, but %s", name, e.detail)
            # A version the policy left out is served again once the newer ones that pushed it out are gone.
            root, policy = self.settings.models_dir, self.settings.version_policy
            left_out = {r.folder for r in self.registry.refused if r.reason.startswith(policy_reason(policy))}
            for folder in by_version_policy(list(folders.values()), root, policy)[0]:
                if shown(folder, root) in left_out:
                    self._stamps.pop(self._key(folder), None)
            for name, folder in folders.items():
                if self._stamps.get(name) == stamp(folder):
                    continue
                try:
                    await self._load(folder)
                except LoadFailed:  # refused and listed; retried once its files change again
                    self._stamps[name] = stamp(folder)

    async def close(self) -> None:
        """Wait for the unloads in progress to close their graphs, then close every served model."""
        await asyncio.gather(*self._drains, return_exceptions=True)
        await self.registry.close()


def _busy(model: ServedModel) -> bool:
    return any(
        getattr(r, "waiting", 0) or getattr(r, "running", 0) for r in (model.encoder, model.decoder, model.chain)
    )


def start_polling(repository: ModelRepository, interval: float) -> asyncio.Task[None]:
    """Run `poll_once` every `interval` seconds until the task is cancelled (the app's lifespan, in poll mode)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await repository.poll_once()
            except Exception:  # a poll that fails (folder unreadable...) must not stop the next one
                log.exception("polling the models directory failed")

    return asyncio.get_running_loop().create_task(loop(), name="model-poll")


def load_all(loader: Loader) -> ModelRegistry:
    """Load every model folder; StartupError when none can serve (or a rule of the operator's is broken).

    A folder that cannot be served is refused with a message naming the file and the field, logged and listed in
    /models; whatever goes wrong in one folder refuses that folder only.
    """
    root = loader.root
    if not root.is_dir():
        raise StartupError(f"models directory {str(root)!r} does not exist; set VAE_MODELS_DIR or --models-dir")
    served: dict[tuple[str, str], ServedModel] = {}
    refused: list[Refused] = []
    folders, skipped = by_version_policy(model_folders(root), root, loader.settings.version_policy)
    refused += [Refused(folder=shown(folder, root), reason=reason) for folder, reason in skipped]
    # Models load side by side: session creation and warm-up release the GIL, and on a GPU each session has its
    # own stream, so the warm-ups overlap. Results are taken in folder order, so names and logs do not depend on
    # which finished first.
    threads = max(1, min(loader.settings.load_threads, len(folders)))
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="load") as pool:
        loading = [pool.submit(loader.load, folder) for folder in folders]
    for folder, future in zip(folders, loading, strict=True):
        where = shown(folder, root)
        try:
            model = future.result()
            clash = served.get((model.name, model.version))
            if clash is not None:
                raise ManifestError(
                    f"{where}/{MANIFEST_FILE}: model {model.name!r} version {model.version!r} is already served "
                    f"from {shown(clash.folder, root)}; give the manifest another 'version' to serve both, or "
                    "another 'name'"
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
        served[(model.name, model.version)] = model
        log.info(
            "loaded model %s (kind %s, version %s) from %s on encoder=%s decoder=%s",
            model.name,
            model.manifest.kind,
            model.manifest.version,
            folder,
            ",".join(model.encoder.providers),
            ",".join(model.decoder.providers),
        )
    if refused and loader.settings.strict_models:
        raise StartupError(
            f"VAE_STRICT_MODELS=true and {len(refused)} model folder(s) were refused: "
            + " | ".join(r.reason for r in refused)
        )
    if not served:
        why = f"; refused: {' | '.join(r.reason for r in refused)}" if refused else ""
        raise StartupError(f"no model could be loaded from {str(root)!r}{why}")
    names = sorted({name for name, _ in served})
    registry = ModelRegistry({}, names[0], refused, loader.plan)
    for model in served.values():
        registry.add(model)
    models = registry.models
    registry.choose_defaults(loader.settings)
    release_freed_memory()  # the graphs' parse buffers and the warm-ups' activations (service/engine/memory.py)
    log.info(
        "serving %d model(s) %s; default %s, conditional default %s",
        len(models),
        sorted(models),
        registry.default,
        registry.default_conditional,
    )
    return registry


def by_version_policy(folders: list[Path], root: Path, policy: str) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The folders to load, and those the version policy leaves out (with the reason), from their manifests' names
    and versions; a folder whose manifest cannot be read, or disagrees with its numbered folder's path, is loaded, so
    that loading says what is wrong with it."""
    versions: dict[str, dict[str, list[Path]]] = {}
    unread: list[Path] = []
    for folder in folders:
        try:
            manifest = load_manifest(folder, root)
            check_layout(folder, root, manifest, shown(folder, root))
        except Exception:  # refused when it loads, with the reason
            unread.append(folder)
            continue
        versions.setdefault(manifest.name, {}).setdefault(manifest.version, []).append(folder)
    keep, skipped = list(unread), []
    for name, by_version in versions.items():
        chosen = served_versions(by_version, policy)
        for version, found in by_version.items():
            if version in chosen:
                keep += found
            else:
                newest = newest_first(chosen)
                why = f"{policy_reason(policy)} (model {name!r} version {version!r}; served: {newest})"
                skipped += [(folder, why) for folder in found]
    return sorted(keep), skipped

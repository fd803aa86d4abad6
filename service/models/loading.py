"""Load one model folder: validate it, open its sessions, put runners in front of them, warm it up.

A folder is served only if it and every file it names lie inside the models folder (symlinks resolved;
vaeformat/files.py), its manifest validates, its declared I/O follows the graph contract, its files match their
sha256, each session's real I/O matches the declaration, and a warm-up run returns the declared shapes. Otherwise
`Loader.load` raises ManifestError naming the file (relative to the models folder) and the field.
"""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path

from vaeformat.contract import check_contract
from vaeformat.errors import ManifestError
from vaeformat.files import MANIFEST_FILE, confined, shown
from vaeformat.manifest import load_manifest, verify_files
from vaeformat.pixels import load_pixels
from vaeformat.prior import load_prior

from ..engine.batching import MicroBatcher
from ..engine.chain import Chain
from ..engine.providers import GPU_PROVIDERS, ProviderPlan, check, probe
from ..engine.runner import Feeds, Graph, GraphRunner, Outputs, Runner, Session
from ..engine.sessions import check_io, open_session
from ..engine.split import Splitter
from ..metrics import Metrics
from ..settings import BatchingSettings, EngineSettings, ModelSettings
from .folders import check_layout
from .model import ServedModel


class Loader:
    """Everything a model load needs: where models live, the engine's and the batcher's settings, the provider
    plan the start-up probe found, the inference threads and the metrics."""

    def __init__(
        self,
        models: ModelSettings,
        engine: EngineSettings,
        batching: BatchingSettings,
        plan: ProviderPlan,
        executor: Executor,
        splitter: Splitter,
        metrics: Metrics,
    ) -> None:
        self.settings = models
        self.engine = engine
        self.batching = batching
        self.plan = plan
        self.executor = executor
        self.splitter = splitter  # large CPU batches across threads (service/engine/split.py)
        self.metrics = metrics

    @classmethod
    def probe(
        cls,
        models: ModelSettings,
        engine: EngineSettings,
        batching: BatchingSettings,
        executor: Executor,
        splitter: Splitter,
        metrics: Metrics,
    ) -> Loader:
        """A loader for the providers a probe session really runs on; ProviderError when they break a rule."""
        plan = probe(engine.providers)
        check(engine.providers, plan.active, require_gpu=engine.require_gpu, what="provider probe")
        return cls(models, engine, batching, plan, executor, splitter, metrics)

    @property
    def root(self) -> Path:
        return self.settings.models_dir

    def load(self, folder: Path) -> ServedModel:
        """Validate, open and warm up one model folder; ManifestError names the file and the field.

        Messages show paths relative to the models folder; sessions open the resolved files that were hashed.
        """
        root = self.root
        where = Path(shown(folder, root))  # what messages show: relative to the models folder
        if confined(folder, root.resolve(), str(where)) == root.resolve():
            raise ManifestError(f"{where}: a symlink to the models folder itself; a model folder must be a sub-folder")
        manifest = load_manifest(folder, root)
        check_layout(folder, root, manifest, str(where))
        check_contract(where, manifest)
        paths = verify_files(folder, manifest, root)
        fitted_prior = load_prior(folder, manifest, root)
        pixels = load_pixels(folder, manifest, root)
        sessions: dict[str, Session] = {}
        for role, path in paths.items():
            graph_file = getattr(manifest.files, role)
            shown_path = where / graph_file.path
            session = open_session(path, self.plan.active, self.engine)
            check_io(session, graph_file, role, shown_path, classes=len(manifest.labels or []))
            check(
                self.engine.providers,
                session.get_providers(),
                require_gpu=self.engine.require_gpu,
                what=str(shown_path),
            )
            sessions[role] = Session(
                session, model=manifest.name, version=manifest.version, graph=role, metrics=self.metrics
            )
        chain = Chain(sessions["encoder"], sessions["decoder"], metrics=self.metrics, device_id=self.engine.cuda_device)
        model = ServedModel(
            manifest,
            folder,
            self._runner(sessions["encoder"]),
            self._runner(sessions["decoder"]),
            self._runner(chain),
            self.metrics,
            fitted_prior=fitted_prior,
            pixels=pixels,
        )
        model.warm_up(self.settings.warm_buckets, where / MANIFEST_FILE)
        for role, graph in sessions.items():
            self.metrics.model_info.labels(
                model=manifest.name,
                kind=manifest.kind,
                version=manifest.version,
                graph=role,
                provider=graph.providers[0],
            ).set(1)
        return model

    def _runner(self, graph: Graph) -> Runner:
        # On a GPU provider a batch keeps to the warmed bucket shapes; on the CPU a large one is split (split.py).
        splitter = None if graph.providers[0] in GPU_PROVIDERS else self.splitter
        stats = self.metrics.graphs.graph(graph.model, graph.version, graph.graph)
        runner: Runner
        if not self.batching.batching:
            runner = GraphRunner(graph, self.executor, splitter.run if splitter is not None else _whole, stats)
        else:
            runner = MicroBatcher(graph, self.executor, self.batching, splitter=splitter, stats=stats)
        self.metrics.graphs.runners[(graph.model, graph.version, graph.graph)] = runner
        return runner


def _whole(graph: Graph, outputs: list[str], feeds: Feeds) -> Outputs:
    return graph.run(outputs, feeds)

"""The application factory: settings in, an ASGI app out; the models load in the lifespan, in the background.

`ServiceApp` is what the server runs: its lifespan (the ASGI lifespan protocol, handled here) says "started" at once
and loads and warms every model in the background, so that the server listens meanwhile (`/health` 200, `/ready`
503 with Retry-After); every HTTP request goes through the edge (service/http/edge.py) to the data plane or the
control plane. Tests and tools that want the models loaded before they go on use `async with app.lifespan():`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ..engine.gpu_memory import GpuMemory
from ..engine.split import Splitter
from ..errors import StartupError
from ..metrics import Metrics
from ..models.loading import Loader
from ..models.repository import ModelRepository, start_polling
from ..processes import ProcessGroup
from ..settings import Settings, cpu_cores
from . import document
from .control import control_app
from .dataplane import ROUTES
from .dataplane.routing import RouteTable
from .edge import Edge
from .security import API_KEY_HEADER, load_api_keys
from .state import ServiceState

log = logging.getLogger(__name__)

# A CPU call takes at most this many times VAE_MAX_BATCH_ROWS rows (a larger job runs as chunks): onnxruntime's
# memory arena keeps the activations of its largest call, so this bounds its memory.
SPLIT_ROWS_PER_BATCH_ROWS = 4


class ServiceApp:
    """The ASGI app: the edge for HTTP, the lifespan for loading the models and stopping."""

    def __init__(
        self,
        settings: Settings,
        on_startup_failure: Callable[[], None] | None = None,
        group: ProcessGroup | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        # One of several server processes: /metrics merges them all, and only the first listens while it loads.
        self.group = group
        if group is not None:
            self.metrics.share(group)
        self.state = ServiceState(settings.limits, settings.providers, settings.models_dir, self.metrics)
        self.on_startup_failure = on_startup_failure  # the server stops (and exits 3) when loading fails
        self.startup_failed = False
        self.control = control_app(self.state)
        self.control.openapi = self.openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend it
        self.routes = RouteTable(ROUTES)
        self._document: dict[str, Any] | None = None
        self._api_keys = load_api_keys(settings.http)
        edge = Edge(
            self.state,
            self.routes,
            self.control,
            lambda: document.PathTable(self.openapi()),
            self._api_keys,
            settings.limits,
        )
        self.app: ASGIApp = edge
        origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
        if origins:
            # Outside the key check: preflights carry no key, and 401s get their CORS headers too.
            self.app = CORSMiddleware(
                edge,
                allow_origins=origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", API_KEY_HEADER],
                expose_headers=[
                    "Retry-After",
                    "X-Model",
                    "X-Model-Version",
                    "X-Prior",
                    "X-Seed",
                    "X-Reconstruction-Error",
                    "X-Request-ID",
                ],
                max_age=600,
            )
        self._executor: ThreadPoolExecutor | None = None
        self._splitter: Splitter | None = None
        self._loading: asyncio.Task[None] | None = None
        self._polling: asyncio.Task[None] | None = None

    def openapi(self) -> dict[str, Any]:
        """The one OpenAPI document of both planes, with this app's limits (made once)."""
        if self._document is None:
            self._document = document.build(
                self.control, self.routes.routes, self.settings.limits, api_key=bool(self._api_keys)
            )
        return self._document

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """The ASGI lifespan protocol: started at once, models loading in the background; stopped cleanly.

        Of several processes, the first listens at once (/ready 503 while it loads); each of the others loads once
        the first is ready, and takes connections only then, so that once /ready has said 200 anywhere, every
        process that answers is ready. A process that replaces one that died (the first included) is one of the
        others: the ones still serving are ready, and it must not take their connections while it loads."""
        await receive()  # lifespan.startup
        loop = asyncio.get_running_loop()
        sharing = loop.create_task(self._share_metrics()) if self.group is not None else None
        if self.group is None or (self.group.first and not self.group.first_is_ready()):
            self._loading = loop.create_task(self._load_in_background())
            await send({"type": "lifespan.startup.complete"})
        else:
            try:
                await self._first_ready()  # the first loads alone on every core: /ready sooner
                await self.load()
            except Exception as e:  # StartupError, or a defect: uvicorn ends the process with status 3
                log.error("cannot start: %s", e, exc_info=not isinstance(e, StartupError))
                self.startup_failed = True
                await send({"type": "lifespan.startup.failed", "message": str(e)})
                return
            await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await self._stop()
        if sharing is not None:
            sharing.cancel()
            await asyncio.gather(sharing, return_exceptions=True)
            self._write_metrics()  # the last requests' counts
        await send({"type": "lifespan.shutdown.complete"})

    async def _first_ready(self, poll: float = 0.05, patience: float = 600.0) -> None:
        """Wait until the first process has loaded (if it never does, the supervisor stops everything)."""
        assert self.group is not None
        for _ in range(int(patience / poll)):
            if self.group.first_is_ready():
                return
            await asyncio.sleep(poll)

    async def _share_metrics(self) -> None:
        """Write this process's metrics where the other processes' /metrics read them, every interval."""
        assert self.group is not None
        while True:
            self._write_metrics()
            await asyncio.sleep(self.group.interval)

    def _write_metrics(self) -> None:
        try:
            if self.group is not None:
                self.group.write(self.metrics.registry)
        except OSError as e:  # the shared folder went away (the supervisor is stopping): nothing to share with
            log.debug("metrics not shared: %s", e)

    async def _load_in_background(self) -> None:
        try:
            await self.load()
            if self.group is not None:
                self.group.mark_ready()
        except StartupError as e:
            log.error("cannot start: %s", e)
            self.startup_failed = True
            if self.on_startup_failure is not None:
                self.on_startup_failure()
        except Exception:  # a defect in loading: the service cannot serve
            log.exception("cannot start")
            self.startup_failed = True
            if self.on_startup_failure is not None:
                self.on_startup_failure()

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[ServiceApp]:
        """Load every model (StartupError when none can serve), serve within the block, then stop."""
        await self.load()
        try:
            yield self
        finally:
            await self._stop()

    async def load(self) -> None:
        """Load and warm every model (blocking work, off the loop); /ready says 503 until this ends."""
        settings = self.settings
        self._executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="inference")
        self._splitter = Splitter(cpu_cores(), max_rows=SPLIT_ROWS_PER_BATCH_ROWS * settings.max_batch_rows)
        loader = await asyncio.to_thread(
            Loader.probe,
            settings.models,
            settings.engine,
            settings.batcher,
            self._executor,
            self._splitter,
            self.metrics,
        )
        deadline_s = settings.request_deadline_ms / 1000
        repository = await asyncio.to_thread(ModelRepository.open, loader, self.state.in_flight, deadline_s)
        self.state.repository = repository
        if repository.registry.gpu:  # device memory in /health and /metrics, where the driver's NVML is there to ask
            self.state.gpu_memory = self.metrics.watch_gpu(GpuMemory(settings.cuda_device))
        if settings.model_control == "poll":
            self._polling = start_polling(repository, settings.model_poll_s)

    async def _stop(self) -> None:
        if self._loading is not None and not self._loading.done():
            await asyncio.gather(self._loading, return_exceptions=True)  # free what a stop during loading loaded
        if self._polling is not None:
            self._polling.cancel()
            await asyncio.gather(self._polling, return_exceptions=True)
            self._polling = None
        repository, self.state.repository = self.state.repository, None
        if repository is not None:
            await repository.close()  # unloads in progress close their graphs, then every model's
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        if self._splitter is not None:
            self._splitter.close()
            self._splitter = None


def create_app(
    settings: Settings | None = None,
    on_startup_failure: Callable[[], None] | None = None,
    group: ProcessGroup | None = None,
) -> ServiceApp:
    """Build the app; `Settings()` reads the VAE_* environment when no settings are given."""
    return ServiceApp(settings or Settings(), on_startup_failure, group)

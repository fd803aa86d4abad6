"""Run the app on uvicorn the way the README says: listen at once, load behind /ready, stop cleanly on SIGTERM.

Stock uvicorn differs in three ways, each fixed here:
- it runs the app's startup (loading and warming every model) before it listens, so the port refuses
  connections meanwhile; `BackgroundLifespan` runs it while the server already answers (`/health` 200,
  `/ready` 503 with Retry-After), and `ServiceServer` ends the process with status 3 if it fails;
- it re-raises a caught SIGTERM after its graceful shutdown, so the process ends with 143; here a stop that
  was asked for and carried out exits 0, and it marks the app as shutting down first (`/ready` 503);
- it has no bound on headers or slow clients: see service/connection.py.
With several processes, `ServiceSupervisor` runs `ServiceServer`s, and stops (status 3) when one cannot start
rather than restarting it forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Generator
from types import FrameType

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.lifespan.on import LifespanOn
from uvicorn.server import HANDLED_SIGNALS
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from .app import create_app
from .connection import GuardedHttpProtocol
from .deps import begin_shutdown
from .errors import StartupError
from .settings import Settings

log = logging.getLogger(__name__)


class ServiceConfig(uvicorn.Config):
    """uvicorn's Config from `Settings`; every serving process builds its own app from them (they pickle)."""

    def __init__(self, settings: Settings, processes: int = 1) -> None:
        self.settings = settings  # before super().__init__, which configures logging
        super().__init__(
            "service.app:create_app",  # named in uvicorn's messages; `load_app` builds it from `settings`
            factory=True,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            lifespan="on",
            http=GuardedHttpProtocol,
            ws="none",  # no WebSocket routes: an Upgrade header is just a header
            timeout_keep_alive=settings.keep_alive_timeout_s,
            timeout_graceful_shutdown=settings.graceful_shutdown_timeout_s,
            workers=processes,
        )

    def configure_logging(self) -> None:
        super().configure_logging()  # uvicorn's own loggers
        level = self.settings.log_level.upper()
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def load_app(self) -> Callable[[], FastAPI]:
        try:
            self.app_instance = create_app(self.settings)
        except StartupError as e:  # an API key file that cannot be read, say: every retry would fail the same way
            log.error("cannot start: %s", e)
            sys.exit(STARTUP_FAILURE)
        return lambda: self.app_instance

    def load(self) -> None:
        super().load()
        self.lifespan_class = BackgroundLifespan


class BackgroundLifespan(LifespanOn):
    """The app's startup runs in the background, so that the server listens (and says not ready) meanwhile."""

    loading: asyncio.Task[None] | None = None

    async def startup(self) -> None:
        self.loading = asyncio.create_task(super().startup())

    @property
    def failed(self) -> bool:
        """The app's startup has ended, and failed (its reason is in the log)."""
        return self.loading is not None and self.loading.done() and self.should_exit

    async def shutdown(self) -> None:
        if self.loading is not None:
            await self.loading  # a stop while loading waits for the load, so that the app frees what it loaded
        await super().shutdown()


class ServiceServer(uvicorn.Server):
    """A uvicorn Server that stops when the app cannot start, marks the app at SIGTERM, and exits 0 after it."""

    config: ServiceConfig
    startup_failed = False

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        super().run(sockets)
        if self.startup_failed:
            sys.exit(STARTUP_FAILURE)  # what uvicorn's supervisor reads as "do not restart"

    async def on_tick(self, counter: int) -> bool:
        if isinstance(self.lifespan, BackgroundLifespan) and self.lifespan.failed:
            self.startup_failed = True
            return True
        return await super().on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        app = getattr(self.config, "app_instance", None)
        if app is not None:
            begin_shutdown(app)
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # uvicorn's version re-raises the caught signal once shut down, so SIGTERM ends the process with 143
        # (0 only as PID 1 in a container, where the kernel ignores it); this one does not.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


class ServiceProcess(Process):
    """One worker process of `ServiceSupervisor`, running a `ServiceServer`."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = ServiceServer(config=self.config)
        return self._server


class ServiceSupervisor(Multiprocess):
    """uvicorn's process supervisor with `ServiceProcess` workers; it stops when one cannot start."""

    startup_failed = False

    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            process = ServiceProcess(self.config, self.sockets)
            process.start()
            self.processes.append(process)

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self.processes):
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # alive but not answering: hung
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # Loading failed (the reason is in the log above); every replacement would fail the same way.
                log.error("worker process [%s] could not start; stopping the service", process.pid)
                self.startup_failed = True
                self.should_exit.set()
                return
            log.info("worker process [%s] died (exit status %s); starting another", process.pid, process.exitcode)
            self.processes[index] = ServiceProcess(self.config, self.sockets)
            self.processes[index].start()

    def handle_hup(self) -> None:
        log.warning("SIGHUP ignored: restart the service to reload it")

    def handle_ttin(self) -> None:
        log.warning("SIGTTIN ignored: set VAE_PROCESSES and restart the service to change the process count")


def serve(settings: Settings, processes: int = 1) -> None:
    """Serve until SIGTERM or SIGINT (then return); exit with status 3 when the service cannot start."""
    config = ServiceConfig(settings, processes)
    if processes == 1:
        ServiceServer(config).run()
        return
    supervisor = ServiceSupervisor(config, sockets=[config.bind_socket()])
    supervisor.run()
    if supervisor.startup_failed:
        sys.exit(STARTUP_FAILURE)

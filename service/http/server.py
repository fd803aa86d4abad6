"""Run the app on uvicorn the way docs/service.md says: listen at once, load behind /ready, stop cleanly on SIGTERM.

- The app answers the ASGI lifespan's startup at once and loads its models in the background (service/http/app.py),
  so the port answers meanwhile (`/health` 200, `/ready` 503); when loading fails, the server stops and the process
  ends with status 3.
- SIGTERM marks the app as shutting down (`/ready` 503) before uvicorn drains its connections
  (service/http/seam.py), and a stop that was asked for and carried out ends the process with status 0 (uvicorn
  re-raises the signal it caught once it has shut down; the handler installed here before it starts takes it).
- With several processes, a supervisor here starts them on one listening socket, replaces one that dies, and
  stops (status 3) when one cannot start rather than restarting it forever.
Connection limits (header size and time, body time and rate, connection cap) are the seam's protocol class.
"""

from __future__ import annotations

import errno
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

from .. import tracing
from ..engine.memory import limit_heap_arenas
from ..errors import StartupError
from ..processes import ProcessGroup
from ..settings import Settings
from .request_id import configure_logging

log = logging.getLogger(__name__)

STARTUP_FAILURE = 3  # the exit status of a service that cannot start: a supervisor must not restart it
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Takes the stop signal uvicorn re-raises after a clean shutdown (else SIGTERM would end the process with 143)."""


def run(settings: Settings, sockets: list[socket.socket] | None = None, group: ProcessGroup | None = None) -> int:
    """Serve in this process until SIGTERM or SIGINT: 0 after a clean stop, STARTUP_FAILURE when it cannot start.

    `group`: this process's place among several (service/processes.py)."""
    # Here: a supervisor process never loads the app's dependencies (onnxruntime, the web framework, numpy...).
    import uvicorn

    from .app import create_app
    from .seam import SignalledServer, guarded_protocol

    server: SignalledServer | None = None

    def stop() -> None:
        if server is not None:
            server.stop()

    try:
        app = create_app(settings, on_startup_failure=stop, group=group)
    except StartupError as e:  # an API key file that cannot be read, say: every retry would fail the same way
        configure_logging(settings.log_level, settings.log_format)
        log.error("cannot start: %s", e)
        return STARTUP_FAILURE
    # uvicorn builds each access-log line's arguments before the logger drops it: none below the info level. The
    # client address it takes from X-Forwarded-For (its proxy-headers middleware, one more frame a request) is
    # read by the access log alone, so it is taken only when there is one.
    access_log = settings.log_level in ("debug", "info")
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's loggers reach the root handler: request IDs, text or JSON (request_id.py)
        access_log=access_log,
        proxy_headers=access_log,
        lifespan="on",
        http=guarded_protocol(settings.http, settings.max_body_bytes),
        ws="none",  # no WebSocket routes: an Upgrade header is just a header
        timeout_keep_alive=settings.keep_alive_timeout_s,
        timeout_graceful_shutdown=settings.graceful_shutdown_timeout_s,
    )
    configure_logging(settings.log_level, settings.log_format)
    tracing.configure_from_environment()  # per process: the exporter's thread does not survive a fork
    server = SignalledServer(config, on_exit=app.state.begin_shutdown)
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _ignore) for sig in STOP_SIGNALS} if in_main else {}
    try:
        server.run(sockets=sockets)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return STARTUP_FAILURE if app.startup_failed else 0


def _process(settings: Settings, sock: socket.socket, folder: str, index: int) -> None:
    limit_heap_arenas()
    sys.exit(run(settings, [sock], ProcessGroup(Path(folder), index)))


def listening_socket(settings: Settings) -> socket.socket:
    """The socket every server process accepts on, bound before any of them starts."""
    sock = socket.create_server((settings.host, settings.port), backlog=2048)
    sock.set_inheritable(True)
    return sock


def bind_or_exit(settings: Settings) -> socket.socket:
    """The listening socket, bound before anything is loaded; a port that cannot be had is one line and exit 3."""
    try:
        return listening_socket(settings)
    except OSError as e:
        reason = "the port is in use (another server?)" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
        print(
            f"vae-serve: cannot listen on {settings.host}:{settings.port}: {reason}; choose another port with "
            "--port or VAE_PORT (make run PORT=8001)",
            file=sys.stderr,
        )
        sys.exit(STARTUP_FAILURE)


def address_line(settings: Settings) -> str:
    """Where to point a browser: the playground and the API's docs."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    base = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}"
    return f"listening on {base}: playground {base}/playground, API docs {base}/docs; loading the models"


def supervise(settings: Settings, processes: int, sock: socket.socket) -> int:
    """Run `processes` server processes on one socket until SIGTERM or SIGINT; replace one that dies."""
    configure_logging(settings.log_level, settings.log_format)
    folder = tempfile.mkdtemp(prefix="vae-serve-")  # what the processes share (service/processes.py)
    context = multiprocessing.get_context("spawn")  # each process loads its own models, nothing inherited
    stopping = threading.Event()

    def start(index: int) -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_process, args=(settings, sock, folder, index), name=f"vae-serve-{index}")
        process.start()
        return process

    wake_read, wake_write = os.pipe()  # a stop signal wakes the wait below at once

    def on_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        os.write(wake_write, b"\0")

    def on_ignored(signum: int, frame: FrameType | None) -> None:
        log.warning(
            "%s ignored: restart the service to reload it or to change VAE_PROCESSES", signal.Signals(signum).name
        )

    previous = {sig: signal.signal(sig, on_stop) for sig in STOP_SIGNALS}
    previous |= {sig: signal.signal(sig, on_ignored) for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)}
    status = 0
    workers = [start(index) for index in range(processes)]
    log.info("started %d server processes %s", processes, [w.pid for w in workers])
    try:
        while not stopping.is_set():
            multiprocessing.connection.wait([wake_read, *(w.sentinel for w in workers)], timeout=5)
            for index, worker in enumerate(workers):
                if worker.is_alive() or stopping.is_set():
                    continue
                worker.join()
                if worker.exitcode == STARTUP_FAILURE:
                    # Loading failed (the reason is in the log above); every replacement would fail the same way.
                    log.error("server process [%s] could not start; stopping the service", worker.pid)
                    status = STARTUP_FAILURE
                    stopping.set()
                    break
                log.info("server process [%s] ended (exit status %s); starting another", worker.pid, worker.exitcode)
                workers[index] = start(index)
    finally:
        sock.close()  # no new connections from now on (a process that still has its copy closes it as it stops)
        for worker in workers:
            if worker.is_alive():
                worker.terminate()  # SIGTERM: each drains its connections and exits 0
        for worker in workers:
            worker.join(timeout=settings.graceful_shutdown_timeout_s + 10)
            if worker.is_alive():
                worker.kill()
                worker.join()
        shutil.rmtree(folder, ignore_errors=True)
        os.close(wake_read)
        os.close(wake_write)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status


def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT (then return); exit with status 3 when the service cannot start."""
    processes = settings.process_count()
    if processes > 1 and settings.model_control == "explicit":
        # A load or unload request reaches one process; the others would go on serving what they had.
        configure_logging(settings.log_level, settings.log_format)
        log.error(
            "cannot start: VAE_MODEL_CONTROL=explicit loads and unloads models in one process, and VAE_PROCESSES=%d "
            "would leave the others serving what they had; use VAE_PROCESSES=1 (or auto) with explicit control, or "
            "VAE_MODEL_CONTROL=poll, which every process follows",
            processes,
        )
        sys.exit(STARTUP_FAILURE)
    sock = bind_or_exit(settings)
    configure_logging(settings.log_level, settings.log_format)
    log.info(address_line(settings))
    if processes == 1:
        limit_heap_arenas()
    status = run(settings, [sock]) if processes == 1 else supervise(settings, processes, sock)
    if status:
        sys.exit(status)

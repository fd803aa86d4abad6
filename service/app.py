"""The application factory: settings in, a FastAPI app out; models load in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI

from .errors import StartupError, install_error_handlers
from .metrics import Metrics
from .middleware import BodyLimitMiddleware, RequestMetricsMiddleware
from .registry import ModelRegistry, load_registry
from .routes import ROUTERS
from .settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = """\
Encode, decode, sample, reconstruct and generate images with autoencoders of the VAE family, served from
ONNX graphs on onnxruntime. Images in: multipart files, JSON base64, or a raw PNG/JPEG body. Images out:
`format=png|json|npy` (or the Accept header). Errors are RFC 9457 problem details.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load and warm every model before serving; /ready says 503 until then and again while stopping."""
    settings: Settings = app.state.settings
    executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="inference")
    registry: ModelRegistry | None = None
    try:
        # Loading is blocking work (file hashes, session creation, warm-up runs): keep it off the loop.
        try:
            registry = await anyio.to_thread.run_sync(load_registry, settings, executor, app.state.metrics)
        except StartupError as e:
            log.error("cannot start: %s", e)
            raise
        app.state.registry = registry
        yield
    finally:
        app.state.registry = None
        if registry is not None:
            await registry.close()
        executor.shutdown(wait=True, cancel_futures=True)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; `Settings()` reads the VAE_* environment when no settings are given."""
    settings = settings or Settings()
    app = FastAPI(title="VAE service", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.registry = None  # set by the lifespan once every model is loaded and warm
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    # Added last = outermost: metrics also count the 413s that the body limit answers itself.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)
    return app

"""The application factory: settings in, a FastAPI app out; models load in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import APIRouter, FastAPI
from fastapi_offline import FastAPIOffline
from starlette.middleware.cors import CORSMiddleware

from .errors import StartupError, install_error_handlers
from .gpu_memory import GpuMemory
from .metrics import Metrics
from .middleware import BodyLimitMiddleware, RequestMetricsMiddleware
from .registry import ModelRegistry, load_registry
from .repository import InFlight, ModelRepository, polling
from .routes import ROUTERS
from .schema import install_openapi
from .security import API_KEY_HEADER, APIKeyMiddleware, load_api_keys
from .settings import Settings
from .undeclared import UndeclaredRequestMiddleware

log = logging.getLogger(__name__)

DESCRIPTION = """\
Encode, decode, sample, reconstruct and generate images with autoencoders of the VAE family, served from
ONNX graphs on onnxruntime. Images in: multipart files, JSON base64, or a raw PNG/JPEG body. Images out:
`format=png|json|npy` (or the Accept header). Errors are RFC 9457 problem details.
"""


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Load and warm every model; /ready says 503 until then, and again once shutdown begins.

    Under `python -m service` the server listens meanwhile (service/server.py runs this in the background); in
    tests that enter it directly, the models are loaded when the block starts."""
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
        repository = ModelRepository(registry, settings, executor, app.state.metrics, app.state.in_flight)
        repository.start()
        app.state.repository = repository
        app.state.registry = registry
        if registry.gpu:  # device memory in /health and /metrics, where the driver's NVML is there to ask
            app.state.gpu_memory = app.state.metrics.watch_gpu(GpuMemory(settings.cuda_device))
        if settings.model_control == "poll":
            async with polling(repository, settings.model_poll_s):
                yield
        else:
            yield
    finally:
        app.state.registry = None
        if registry is not None:
            control: ModelRepository | None = getattr(app.state, "repository", None)
            if control is not None:  # unloads in progress close their graphs first
                await control.close()
            await registry.close()
        executor.shutdown(wait=True, cancel_futures=True)


def mount_routes(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Put every route of `routers` on the app's own router, in order.

    `include_router` (FastAPI 0.165) keeps each router as an `_IncludedRouter` whose matching rebuilds an
    effective context per candidate on every request: 13% of a `/health` request's CPU under load. The routers
    here carry no include-time options (prefix, dependencies, responses: their routes hold their own), so their
    routes can sit on the app's router directly, where matching is one regex per route.
    """
    for router in routers:
        for route in router.routes:
            app.router.routes.append(route)
    app.router._mark_routes_changed()  # FastAPI caches derived route lists per version


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; `Settings()` reads the VAE_* environment when no settings are given."""
    settings = settings or Settings()
    api_keys = load_api_keys(settings)
    # FastAPIOffline serves Swagger UI and ReDoc from files in its package: /docs works without internet.
    app = FastAPIOffline(
        title="VAE service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    app.state.registry = None  # set by the lifespan once every model is loaded and warm
    app.state.in_flight = InFlight()  # OIP requests per model, which an unload waits for (service/repository.py)
    install_error_handlers(app)
    mount_routes(app, ROUTERS)
    install_openapi(app, settings, api_key=bool(api_keys))
    # Added last = outermost: metrics also count the 401s, 413s and 422s that the middleware answer themselves;
    # CORS sits outside the key check, so that preflights (which carry no key) and 401s get their headers.
    app.add_middleware(UndeclaredRequestMiddleware, openapi=app.openapi)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if api_keys:
        app.add_middleware(APIKeyMiddleware, digests=api_keys)
    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", API_KEY_HEADER],
            expose_headers=["Retry-After", "X-Model", "X-Prior", "X-Seed", "X-Reconstruction-Error"],
            max_age=600,
        )
    app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)
    return app

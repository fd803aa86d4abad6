"""The control plane: FastAPI routes about the service and its models (models, repository, health, readiness,
metrics, the documentation pages and the playground)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from ..state import ServiceState
from . import meta, playground, v2
from .errors import install_error_handlers

DESCRIPTION = """\
Encode, decode, sample, reconstruct and generate images with autoencoders of the VAE family, served from
ONNX graphs on onnxruntime. Images in: multipart files, JSON base64, or a raw PNG/JPEG body. Images out:
`format=png|json|npy` (or the Accept header). Errors are RFC 9457 problem details.
"""
VERSION = "0.1.0"


def control_app(state: ServiceState) -> FastAPI:
    """The control plane's FastAPI app, reading the process's shared state."""
    # FastAPIOffline serves Swagger UI and ReDoc from files in its package: /docs works without internet.
    app = FastAPIOffline(
        title="VAE service",
        version=VERSION,
        description=DESCRIPTION,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.state.service = state
    install_error_handlers(app)
    for router in (meta.router, v2.router, playground.router):
        app.include_router(router)
    return app

"""Routes about the service itself: models, health, readiness, Prometheus metrics."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Path, Query, Response

from ...models.describe import details, summary
from ...models.reports import read_report
from ...models.versions import newest_first
from .. import openapi as doc
from ..dataplane.scoring import DEFAULT_SAMPLES
from .deps import ReadyRegistryDep, RegistryDep, StateDep

router = APIRouter(tags=["service"])

_PROVIDERS_EXAMPLE = {"mnist-vae": {"encoder": ["CPUExecutionProvider"], "decoder": ["CPUExecutionProvider"]}}
_SUMMARY_EXAMPLE = {
    "name": "mnist-vae",
    "version": "1",
    "kind": "vae",
    "description": "VAE on MNIST",
    "image": {"channels": 1, "height": 28, "width": 28},
    "latent_dim": 16,
    "labels": None,
    "likelihood": "bernoulli",
    "capabilities": {
        "encode": True,
        "encode_samples": True,
        "decode": True,
        "reconstruct": True,
        "sample": True,
        "generate": False,
        "score": True,
    },
    "priors": ["fitted", "standard"],
    "default_prior": "fitted",
    "versions": ["1"],
    "providers": {"encoder": ["CPUExecutionProvider"], "decoder": ["CPUExecutionProvider"]},
}


def _ok(example: dict[str, Any], description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"application/json": {"example": example}}}}


@router.get(
    "/models",
    responses={
        **_ok(
            {
                "default": "mnist-vae",
                "default_conditional": "mnist-cvae",
                "provider_mode": "auto",
                "models": [_SUMMARY_EXAMPLE],
                "refused": [],
                "limits": {"max_images": 64, "max_latents": 1024, "max_n": 256, "max_body_bytes": 10485760},
                "defaults": {"samples": DEFAULT_SAMPLES},
            },
            "the loaded models and the refused folders",
        ),
        **doc.errors(503),
    },
)
async def list_models(registry: RegistryDep, state: StateDep) -> dict[str, Any]:
    """Every loaded model (from its manifest), with the execution providers its sessions really run on, and the
    limits one request must keep within (VAE_MAX_*: the client splits larger work into requests that do), and the
    defaults of the parameters those limits count (`samples`: the K of /score and /classify when none is given)."""
    return {
        "default": registry.default,
        "default_conditional": registry.default_conditional,
        "provider_mode": registry.plan.mode,
        "models": [
            summary(m) | {"versions": newest_first(registry.versions[n])} for n, m in sorted(registry.models.items())
        ],
        "refused": [{"folder": r.folder, "reason": r.reason} for r in registry.refused],
        "limits": state.limits.model_dump(),
        "defaults": {"samples": DEFAULT_SAMPLES},
    }


@router.get(
    "/models/{name}",
    responses={
        **_ok(
            {
                **_SUMMARY_EXAMPLE,
                "metrics": {"n_images": 1000, "iw_bound": 93.9, "active_units": 23, "recon_squared_error": 5.76},
                "reports": {"samples": {"path": "samples.png", "url": "/models/mnist-vae/reports/samples.png"}},
            },
            "one model: manifest figures, provenance, declared graph I/O",
        ),
        **doc.errors(404, 503),
    },
)
async def get_model(
    registry: RegistryDep,
    name: str = Path(examples=["mnist-vae"]),
    version: str | None = Query(None, max_length=255, description="a served version; the newest when omitted"),
) -> dict[str, Any]:
    """One model in detail: held-out metrics, training provenance, graph files and their declared I/O."""
    model = registry.get(name, version)
    return details(model) | {"versions": newest_first(registry.versions[model.name])}


@router.get(
    "/models/{name}/reports/{file:path}",
    response_class=Response,
    responses={
        200: {
            "description": "the report image, as the model's training wrote it",
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}, "image/jpeg": {}},
        },
        **doc.errors(404, 503),
    },
)
async def get_report(
    registry: RegistryDep,
    state: StateDep,
    name: str = Path(examples=["mnist-cvae"]),
    file: str = Path(description="a file the manifest's reports list (GET /models/{name})", examples=["samples.png"]),
) -> Response:
    """A report image the model's manifest lists: samples, reconstructions, training curves."""
    model = registry.get(name)
    content, media_type = await asyncio.to_thread(read_report, model.manifest, model.folder, file, state.models_dir)
    return Response(content, media_type=media_type, headers={"X-Content-Type-Options": "nosniff"})


@router.get(
    "/health",
    responses=_ok(
        {
            "status": "ok",
            "ready": True,
            "provider_mode": "auto",
            "gpu": False,
            "providers": _PROVIDERS_EXAMPLE,
            "gpu_memory": None,
        },
        "the process is alive (also while models load)",
    ),
)
async def health(state: StateDep) -> dict[str, Any]:
    """Liveness: 200 whenever the process answers; says whether models are loaded and on which providers."""
    registry = state.registry
    if registry is None:
        return {"status": "ok", "ready": False, "provider_mode": state.provider_mode, "gpu": None, "providers": {}}
    figures = state.gpu_memory.read() if state.gpu_memory is not None else None
    return {
        "status": "ok",
        "ready": not state.shutting_down,
        "provider_mode": state.provider_mode,
        "gpu": registry.gpu,
        "providers": registry.providers,
        "gpu_memory": None if figures is None else asdict(figures),
    }


@router.get(
    "/ready",
    responses={
        **_ok(
            {"ready": True, "models": ["mnist-ae", "mnist-vae"], "default": "mnist-vae"},
            "every model is loaded and warmed up",
        ),
        **doc.errors(503),
    },
)
async def ready(registry: ReadyRegistryDep) -> dict[str, Any]:
    """Readiness: 200 once every model is loaded and warmed up; 503 (with Retry-After) before and at shutdown."""
    return {"ready": True, "models": sorted(registry.models), "default": registry.default}


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {
                "text/plain": {"example": 'vae_requests_total{method="GET",route="/sample",status="200"} 3.0\n'}
            },
        }
    },
)
async def metrics(state: StateDep) -> Response:
    """Prometheus metrics: requests by route and status, inference time and batch size, images produced."""
    return Response(state.metrics.render(), media_type=state.metrics.content_type)

"""A served model as GET /models and GET /models/{name} present it: from its manifest and its runners."""

from __future__ import annotations

from typing import Any

from .model import ServedModel
from .reports import report_url


def summary(model: ServedModel) -> dict[str, Any]:
    """What GET /models lists for one model, with the providers its sessions really run on."""
    m = model.manifest
    return {
        "name": m.name,
        "version": m.version,
        "kind": m.kind,
        "description": m.description,
        "image": m.image.model_dump(),
        "latent_dim": m.latent_dim,
        "labels": m.labels,
        "likelihood": m.likelihood,
        "capabilities": model.capabilities(),
        "priors": (["fitted"] if model.fitted_prior is not None else []) + (["standard"] if model.has_prior else []),
        "default_prior": model.default_prior if model.can_sample else None,
        "providers": {"encoder": model.encoder.providers, "decoder": model.decoder.providers},
    }


def details(model: ServedModel) -> dict[str, Any]:
    """What GET /models/{name} shows: the summary plus the manifest's measured figures and provenance."""
    m = model.manifest
    training = m.training.model_dump(mode="json")
    split = training.pop("split")
    split.pop("test_indices")  # thousands of integers; they stay in manifest.json
    training["split"] = split
    return {
        **summary(model),
        "created": m.created,
        "encoder_conditioned": m.encoder_conditioned,
        "gaussian_sigma": m.gaussian_sigma,
        "metrics": m.metrics.model_dump(mode="json", exclude_none=True),
        "training": training,
        "files": {
            role: {
                "path": g.path,
                "sha256": g.sha256,
                "inputs": [t.model_dump() for t in g.inputs],
                "outputs": [t.model_dump() for t in g.outputs],
            }
            for role, g in (("encoder", m.files.encoder), ("decoder", m.files.decoder))
        },
        "reports": {key: {"path": path, "url": report_url(m.name, path)} for key, path in m.reports.items()},
        "prior": None if m.prior is None else m.prior.model_dump(),
    }

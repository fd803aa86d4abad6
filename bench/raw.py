"""Raw in-process onnxruntime: each model's encoder and decoder at fixed batch sizes, no HTTP, no batcher."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from service.engine.providers import probe
from service.engine.sessions import open_session
from service.settings import Settings
from vaeformat.manifest import load_manifest


def feeds_for(graph: Any, rows: int, classes: int) -> dict[str, np.ndarray]:
    """Random contract inputs of `rows` rows for a declared graph (manifest `files.encoder` / `files.decoder`)."""
    rng = np.random.default_rng(0)
    feeds: dict[str, np.ndarray] = {}
    for spec in graph.inputs:
        shape = (rows, *spec.shape[1:])
        if spec.dtype == "int64":
            feeds[spec.name] = rng.integers(0, max(1, classes), shape, dtype=np.int64)
        else:
            feeds[spec.name] = rng.random(shape, dtype=np.float32)
    return feeds


def time_runs(run: Any, seconds: float, min_runs: int = 5) -> list[float]:
    """Call `run` (after one untimed call) until `seconds` have passed and at least `min_runs` calls: seconds each."""
    run()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < min_runs or time.perf_counter() < end:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def raw_runtime(models_dir: Path, batches: tuple[int, ...], seconds: float) -> list[dict[str, Any]]:
    """Median latency and rows/s per model, graph and batch size, on the providers `auto` picks.

    Sessions get the service's runtime options (`Settings()`: the same VAE_* environment), so the two differ
    only by what the service adds.
    """
    settings = Settings()
    providers = probe(settings.providers).active
    rows_out = []
    for folder in sorted(p for p in models_dir.iterdir() if (p / "manifest.json").is_file()):
        manifest = load_manifest(folder)
        for role in ("encoder", "decoder"):
            graph = getattr(manifest.files, role)
            session = open_session(folder / graph.path, providers, settings.engine)
            outputs = [o.name for o in graph.outputs]
            for rows in batches:
                feeds = feeds_for(graph, rows, len(manifest.labels or []))
                median = statistics.median(time_runs(lambda s=session, o=outputs, f=feeds: s.run(o, f), seconds))
                rows_out.append(
                    {
                        "model": manifest.name,
                        "graph": role,
                        "batch": rows,
                        "provider": session.get_providers()[0],
                        "median_ms": 1000 * median,
                        "rows_per_s": rows / median,
                    }
                )
    return rows_out


def default_options_row(models_dir: Path, model: str, graph: str, batch: int, seconds: float) -> dict[str, Any]:
    """One graph at one batch size with onnxruntime's own default session options (what a user gets from
    `InferenceSession(path)`): the figure a served model's throughput is held against."""
    manifest = load_manifest(models_dir / model)
    spec = getattr(manifest.files, graph)
    providers = probe(Settings().providers).active
    session = ort.InferenceSession(str(models_dir / model / spec.path), providers=list(providers))
    outputs = [o.name for o in spec.outputs]
    feeds = feeds_for(spec, batch, len(manifest.labels or []))
    median = statistics.median(time_runs(lambda: session.run(outputs, feeds), seconds))
    return {
        "model": model,
        "graph": graph,
        "batch": batch,
        "provider": session.get_providers()[0],
        "median_ms": 1000 * median,
        "rows_per_s": batch / median,
    }

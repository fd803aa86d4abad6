"""The peers measured beside the service, with the same load generator, requests and client counts.

LitServe (bench/litserve_peer.py) serves /encode with a multipart upload (LitServe's documented way to send a
file), so the service is measured on that same multipart request, freshly started beside it.

mosec (bench/mosec_peer.py) and Triton through PyTriton (bench/triton_peer.py) run in venvs of their own
(bench/venvs.py, made on first use) with the service's session options (bench/session_spec.py). Each serves one
PNG to encode and 256 latents to decode; mosec on the service's own bodies (a raw PNG, a .npy), Triton on the
Open Inference Protocol's binary tensors (bench/peer_requests.py). The service is measured on its /encode and
/decode with the same content, freshly started. Before any row, every server's answers are compared with the
graphs run in-process with the service's options (bench/peer_check.py): `max_abs_diff` in its figures.
"""

from __future__ import annotations

import json
import os
import signal
import sysconfig
from pathlib import Path
from typing import Any

from service.settings import Settings

from . import venvs
from .load import Server, free_port, server, service_argv
from .loadgen import Request
from .overhead import HEAD, rows
from .peer_check import expected_answers, max_abs_diff
from .peer_requests import (
    DECODE_ROWS,
    latent_dim,
    latents,
    npy_decode,
    oip_decode,
    oip_encode,
    service_decode,
    service_encode,
)
from .session_spec import session_spec
from .workloads import CLIENTS, ENCODE, ENCODE_FORM, measure

DECODE_CLIENTS = (1, 8)
MOSEC_WORKERS = (1, 2)  # /decode is measured with both; /encode with one worker, like the service's one process
TRITON_READY_S = 300  # Triton copies its server into a workspace and loads each model through a Python stub


def litserve_figures(models_dir: Path, model: str, seconds: float) -> dict[str, Any]:
    """/encode (multipart) at every client count: the LitServe server on `model`, then the service (batching on)."""
    port = free_port()
    argv = ["-m", "bench.litserve_peer", str(port), "--models-dir", str(models_dir), "--model", model]
    with server(argv, port, stop=signal.SIGINT) as s:  # LitServe stops its workers on Ctrl-C
        litserve: dict[str, Any] = {"ready_s": s.ready_seconds, "rss_mib": s.rss_mib()}
        litserve["encode_form"] = [measure(s, port, ENCODE_FORM, c, seconds) for c in CLIENTS]
    port = free_port()
    with server(service_argv(models_dir, port), port) as s:
        service = {"encode_form": [measure(s, port, ENCODE_FORM, c, seconds) for c in CLIENTS]}
    return {"litserve": litserve, "service": service}


def _rows(s: Server, port: int, encode: Request | None, decode: Request, seconds: float) -> dict[str, Any]:
    """Start-up figures, /encode at every client count (unless `encode` is None), /decode at DECODE_CLIENTS."""
    figures: dict[str, Any] = {"ready_s": s.ready_seconds, "rss_mib": s.rss_mib()}
    if encode is not None:
        figures["encode"] = [measure(s, port, encode, c, seconds) for c in CLIENTS]
    figures["decode"] = [measure(s, port, decode, c, seconds, DECODE_ROWS) for c in DECODE_CLIENTS]
    return figures


def service_rows(models_dir: Path, model: str, seconds: float) -> dict[str, Any]:
    """The service (batching on, started fresh) on the raw-PNG /encode and the .npy /decode of the same content."""
    folder = models_dir / model
    z = latents(latent_dim(folder))
    encode, decode = service_encode(model), service_decode(z, model)
    port = free_port()
    with server(service_argv(models_dir, port), port) as s:
        gap = max_abs_diff(s.url, [encode, decode], expected_answers(folder, z))
        return {**_rows(s, port, encode, decode, seconds), "max_abs_diff": gap}


def mosec_argv(models_dir: Path, model: str, port: int, workers: int, settings: Settings) -> list[str]:
    """bench/mosec_peer.py's command line (after the venv's python) with the service's batching and session options."""
    return [
        *("-m", "bench.mosec_peer", "--port", str(port), "--address", "127.0.0.1", "--log-level", "error"),
        *("--models-dir", str(models_dir), "--model", model, "--workers", str(workers)),
        *("--runtime", json.dumps(session_spec(models_dir / model, workers, settings))),
        *("--max-batch-rows", str(settings.max_batch_rows)),
        # mosec takes whole milliseconds, at least 1 (below that it uses its own 10 ms default)
        *("--max-batch-delay-ms", str(max(1, round(settings.max_batch_delay_ms)))),
    ]


def mosec_figures(models_dir: Path, model: str, seconds: float, service: bool = True) -> dict[str, Any]:
    """mosec with one worker per route (/encode, /decode) and with two (/decode), then (unless `service` is False)
    the service on the same."""
    settings = Settings()
    python = venvs.ensure("mosec")
    folder = models_dir / model
    z = latents(latent_dim(folder))
    decode = npy_decode(z)
    expected = expected_answers(folder, z)
    by_workers: dict[str, Any] = {}
    for workers in MOSEC_WORKERS:
        port = free_port()
        argv = mosec_argv(models_dir, model, port, workers, settings)
        # mosec's GET / answers before its workers have started: ready once both routes answer a real request.
        with server(argv, port, python=python, ready=(ENCODE, decode)) as s:
            gap = max_abs_diff(s.url, [ENCODE, decode], expected)
            encode = ENCODE if workers == 1 else None
            by_workers[str(workers)] = {**_rows(s, port, encode, decode, seconds), "max_abs_diff": gap}
    figures: dict[str, Any] = {"model": model, "mosec": {"pins": list(venvs.PINS["mosec"]), "workers": by_workers}}
    if service:
        figures["service"] = service_rows(models_dir, model, seconds)
    return figures


def triton_env() -> dict[str, str]:
    """LD_LIBRARY_PATH with this interpreter's lib/ first: Triton's Python backend stub loads libpython from there."""
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    return {"LD_LIBRARY_PATH": os.pathsep.join(p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p)}


def triton_argv(models_dir: Path, model: str, port: int, settings: Settings) -> list[str]:
    """bench/triton_peer.py's command line (after the venv's python) with the service's batching and session options."""
    return [
        *("-m", "bench.triton_peer", "--port", str(port), "--models-dir", str(models_dir), "--model", model),
        *("--runtime", json.dumps(session_spec(models_dir / model, 1, settings))),
        *("--max-batch-rows", str(settings.max_batch_rows), "--max-batch-delay-ms", str(settings.max_batch_delay_ms)),
        *("--max-latents", str(settings.max_latents)),
    ]


def triton_figures(models_dir: Path, model: str, seconds: float, service: bool = True) -> dict[str, Any]:
    """Triton's encoder (one PNG as BYTES) and decoder (256 rows, binary FP32) over OIP, then (unless `service` is
    False) the service."""
    settings = Settings()
    python = venvs.ensure("triton")
    folder = models_dir / model
    z = latents(latent_dim(folder))
    encode, decode = oip_encode(), oip_decode(z)
    port = free_port()
    # /v2/health/ready answers 200 before PyTriton has loaded the models: ask each model, the last loaded first.
    ready = (Request("GET", "/v2/models/decoder/ready"), Request("GET", "/v2/models/encoder/ready"))
    argv = triton_argv(models_dir, model, port, settings)
    with server(argv, port, triton_env(), TRITON_READY_S, stop=signal.SIGINT, python=python, ready=ready) as s:
        gap = max_abs_diff(s.url, [encode, decode], expected_answers(folder, z))
        triton = {**_rows(s, port, encode, decode, seconds), "max_abs_diff": gap, "pins": list(venvs.PINS["triton"])}
    figures: dict[str, Any] = {"model": model, "triton": triton}
    if service:
        figures["service"] = service_rows(models_dir, model, seconds)
    return figures


# What each kind of server is sent, as the report names it: (encode, decode).
ROUTES = {
    "mosec": ("`POST /encode` (raw PNG)", "`POST /decode` (npy in and out)"),
    "triton": ("`encoder` (OIP, the PNG as BYTES)", "`decoder` (OIP, binary FP32 in and out)"),
    "service": ("`POST /encode` (raw PNG)", "`POST /decode` (npy in and out)"),
}


def _servers(figures: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(kind, name, figures) of every server in `figures`, the peers first."""
    mosec = figures.get("mosec", {}).get("workers", {})
    listed = [("mosec", f"mosec, {workers} worker(s) per route", f) for workers, f in mosec.items()]
    if "triton" in figures:
        listed.append(("triton", "Triton", figures["triton"]))
    return [*listed, ("service", "the service", figures["service"])]


def peers_report(figures: dict[str, Any]) -> list[str]:
    """Markdown for `mosec_figures`, `triton_figures`, or both merged (`{**mosec, **triton}`)."""
    servers = _servers(figures)
    pins = sorted({pin for kind in ("mosec", "triton") for pin in figures.get(kind, {}).get("pins", [])})
    return [
        f"## mosec and Triton (PyTriton) beside the service ({figures['model']})",
        "",
        f"Each peer runs in a venv of its own (`bench/venvs.py`: {', '.join(f'`{p}`' for p in pins)}) with the "
        "service's onnxruntime session options, and batches single-image encodes as the service does "
        f"(VAE_MAX_BATCH_ROWS, VAE_MAX_BATCH_DELAY_MS). Decoding sends {DECODE_ROWS} latents per request. Every "
        "server was started fresh for its rows, and its answers were first compared with the graphs run in-process "
        "(`bench/peer_check.py`).",
        "",
        *(
            f"- {name}: process start to ready {f['ready_s']:.2f} s; resident memory after warm-up (all its "
            f"processes) {f['rss_mib']:.0f} MiB; answers within {f['max_abs_diff']:.1e} of the graphs run in-process."
            for _, name, f in servers
        ),
        "",
        *HEAD,
        *(
            line
            for kind, name, f in servers
            if "encode" in f
            for line in rows(f"{name}, {ROUTES[kind][0]}", f["encode"])
        ),
        *(line for kind, name, f in servers for line in rows(f"{name}, {ROUTES[kind][1]}", f["decode"])),
    ]

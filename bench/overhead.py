"""Serving overhead: the service on the null model (bench/null_model.py), whose graphs cost next to nothing.

What is left is what the service itself costs: raw onnxruntime rows/s of the null graphs; the service's bulk
/sample rows (npy, png, json) and single-image rows (/encode, /sample?n=1) with its CPU time per request; the same
single-image rows with batching off; VAE_PROCESSES=2 against 1 (on the null and the shipped models); and py-spy
profiles of one bulk and one single-image workload.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import httpx

from .load import free_port, server, settle
from .loadgen import Request
from .null_model import null_models_dir
from .profiles import profile, render
from .raw import raw_runtime
from .workloads import CLIENTS, ENCODE, measure

RAW_BATCHES = (1, 64, 256)
BULK_N = 256
BULK_FORMATS = ("npy", "png", "json")
SAMPLE1 = Request("GET", "/sample?n=1")
PROFILE_MIN_S = 1.0  # a profile samples at least this long, so that a --quick run still has samples
PROFILE_TOP = 35  # enough functions to get past the framework's middleware and routing chain into the route
PROFILED = {  # name -> (request, clients, images per request)
    f"bulk: `/sample?n={BULK_N}&format=npy`, 1 client": (Request("GET", f"/sample?n={BULK_N}&format=npy"), 1, BULK_N),
    f"single image: `POST /encode`, {max(CLIENTS)} clients": (ENCODE, max(CLIENTS), 1),
}


def _argv(models_dir: Path, port: int) -> list[str]:
    return ["-m", "service", "--port", str(port), "--models-dir", str(models_dir), "--log-level", "warning"]


def processes_row(models_dir: Path, processes: int, seconds: float) -> dict[str, Any]:
    """/encode at the top client count on a service with VAE_PROCESSES=`processes` (batching on)."""
    port = free_port()
    with server(_argv(models_dir, port), port, {"VAE_PROCESSES": str(processes)}) as s:
        settle(s.url)  # every process ready, not only the first to answer
        row = measure(s, port, ENCODE, max(CLIENTS), seconds)
        return {**row, "processes": processes, "ready_s": s.ready_seconds, "rss_mib": s.rss_mib()}


def _single(models_dir: Path, batching: bool, clients: tuple[int, ...], seconds: float) -> dict[str, Any]:
    port = free_port()
    with server(_argv(models_dir, port), port, {"VAE_BATCHING": str(batching).lower()}) as s:
        return {
            "encode": [measure(s, port, ENCODE, c, seconds) for c in clients],
            "sample1": [measure(s, port, SAMPLE1, c, seconds) for c in clients],
        }


def same_bytes_row(nbytes: int, seconds: float) -> dict[str, Any]:
    """The empty endpoint answering `nbytes` prebuilt bytes at 1 client: the ceiling for a bulk body that size."""
    port = free_port()
    with server(["-m", "bench.empty", str(port)], port) as s:
        return {**measure(s, port, Request("GET", f"/bytes?n={nbytes}"), 1, seconds, BULK_N), "bytes": nbytes}


def null_figures(seconds: float) -> dict[str, Any]:
    """Every null-model figure; the models folder is written to a temporary directory and removed afterwards."""
    with null_models_dir() as models_dir:
        figures: dict[str, Any] = {"raw": raw_runtime(models_dir, RAW_BATCHES, seconds)}
        port = free_port()
        with server(_argv(models_dir, port), port) as s:
            figures |= {"ready_s": s.ready_seconds, "rss_mib": s.rss_mib()}
            figures["bulk"] = {
                fmt: measure(s, port, Request("GET", f"/sample?n={BULK_N}&format={fmt}"), 1, seconds, BULK_N)
                for fmt in BULK_FORMATS
            }
            npy_bytes = len(httpx.get(f"{s.url}/sample?n={BULK_N}&format=npy", timeout=30).content)
            figures["batching on"] = {
                "encode": [measure(s, port, ENCODE, c, seconds) for c in CLIENTS],
                "sample1": [measure(s, port, SAMPLE1, c, seconds) for c in CLIENTS],
            }
            profiled = max(seconds, PROFILE_MIN_S)
            figures["profiles"] = {
                name: profile(s.pid, partial(measure, s, port, request, clients, profiled, n), PROFILE_TOP)
                for name, (request, clients, n) in PROFILED.items()
            }
        figures["same bytes"] = same_bytes_row(npy_bytes, seconds)
        figures["batching off"] = _single(models_dir, False, (max(CLIENTS),), seconds)
        figures["processes"] = [processes_row(models_dir, p, seconds) for p in (1, 2)]
    return figures


HEAD = [
    "| request | clients | req/s | p50 ms | p95 ms | p99 ms | errors | server CPU ms/request "
    "| load generator CPU (cores) |",
    "|---|---|---|---|---|---|---|---|---|",
]


def rows(name: str, results: list[dict[str, Any]]) -> list[str]:
    """Sweep rows with the server's CPU time per request."""
    return [
        f"| {name} | {r['clients']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} "
        f"| {r['errors']} | {r['server_cpu_ms']:.2f} | {r['loadgen_cpu']:.2f} |"
        for r in results
    ]


def processes_table(rows_by_models: dict[str, list[dict[str, Any]]]) -> list[str]:
    """VAE_PROCESSES rows: /encode at the top client count, per models folder."""
    lines = [
        f"| models | VAE_PROCESSES | `/encode` req/s at {max(CLIENTS)} clients | p50 ms | p99 ms "
        "| server CPU ms/request | resident MiB (all processes) |",
        "|---|---|---|---|---|---|---|",
    ]
    for models, results in rows_by_models.items():
        lines += [
            f"| {models} | {r['processes']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['server_cpu_ms']:.2f} | {r['rss_mib']:.0f} |"
            for r in results
        ]
    return lines


def report(null: dict[str, Any], shipped_processes: list[dict[str, Any]]) -> list[str]:
    """The "serving overhead" section of BENCHMARKS.md."""
    on, off, same = null["batching on"], null["batching off"], null["same bytes"]
    return [
        "## Serving overhead (null model)",
        "",
        "The null model (`bench/null_model.py`, written to a temporary folder at run time) has the shipped models' "
        "shapes and contract but one MatMul per graph output, so what these rows measure is the service itself. "
        f"Process start to `/ready`: {null['ready_s']:.2f} s; resident memory after warm-up: {null['rss_mib']:.0f} "
        "MiB. Server CPU time is utime + stime of the server's processes from /proc over each row, per request.",
        "",
        "| graph | batch | median ms | rows/s |",
        "|---|---|---|---|",
        *(f"| {r['graph']} | {r['batch']} | {r['median_ms']:.3f} | {r['rows_per_s']:.0f} |" for r in null["raw"]),
        "",
        "| bulk request | clients | images/s | p50 ms | p99 ms | server CPU ms/request |",
        "|---|---|---|---|---|---|",
        *(
            f"| `/sample?n={BULK_N}&format={fmt}` | {r['clients']} | {r['images_per_s']:.0f} | {r['p50_ms']:.1f} "
            f"| {r['p99_ms']:.1f} | {r['server_cpu_ms']:.2f} |"
            for fmt, r in null["bulk"].items()
        ),
        f"| `GET /bytes?n={same['bytes']}` from the empty endpoint (the npy body's size, prebuilt; counted as "
        f"{BULK_N} images) | {same['clients']} | {same['images_per_s']:.0f} | {same['p50_ms']:.1f} "
        f"| {same['p99_ms']:.1f} | {same['server_cpu_ms']:.2f} |",
        "",
        *HEAD,
        *rows("`POST /encode` (1 image), batching on", on["encode"]),
        *rows("`GET /sample?n=1`, batching on", on["sample1"]),
        *rows("`POST /encode` (1 image), batching off", off["encode"]),
        *rows("`GET /sample?n=1`, batching off", off["sample1"]),
        "",
        "### VAE_PROCESSES=1 against 2",
        "",
        *processes_table({"null model": null["processes"], "shipped models": shipped_processes}),
        "",
        "### Profiles (null model, py-spy: running Python threads, top functions by cumulative share)",
        "",
        "Own samples in `_worker` (an idle executor thread), `Condition.wait` and `Runner.run` (the event loop, "
        "in C) are mostly waiting that py-spy could not tell from work; see `bench/profiles.py`.",
        "",
        *(line for name, summary in null["profiles"].items() for line in render(name, summary)),
    ]

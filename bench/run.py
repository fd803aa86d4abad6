"""`python -m bench.run [--quick] [--seconds S] [--out BENCHMARKS.md]`: every measurement in one go, and the report.

Raw in-process onnxruntime (the service's session options, and onnxruntime's defaults); the service with batching
on and off; an empty FastAPI endpoint on the same uvicorn stack; a PyTorch-eager FastAPI server on the same weights
(bench/torch_peer.py); a LitServe server on the same ONNX encoder (bench/litserve_peer.py); mosec and Triton
(PyTriton), each in a venv of its own, on the null model (bench/peers.py); the serving overhead on the null model,
VAE_PROCESSES=1 against 2, and profiles (bench/overhead.py); the shipped models' rows against a baseline run
(bench/compare.py). Each HTTP row is closed-loop load from bench/loadgen.py, which reports its own CPU, with the
server's CPU per request. The report starts with the targets as ratios (bench/targets.py).
Runs unchanged on a GPU machine: the raw runtime and the service use whatever providers `auto` finds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import onnxruntime as ort

from service.settings import Settings

from . import compare, overhead, targets, workloads
from .load import free_port, server, settle
from .loadgen import Request, default_processes
from .null_model import NAME as NULL_MODEL
from .null_model import null_models_dir
from .peers import litserve_figures, mosec_figures, peers_report, service_rows, triton_figures
from .raw import default_options_row, raw_runtime
from .workloads import CLIENTS, ENCODE, measure

PEER_MODEL = "mnist-vae"  # the service's default model (best unconditional bound), which /sample and /encode use


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if "model name" in line]
        cpu = names[0] if names else cpu
    gpu = None
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"]
        gpu = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip() or None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "gpu": gpu,
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
        "loadgen_processes": default_processes(),
    }


def _bulk(s: Any, port: int, path: str, images: int, clients: int, seconds: float) -> dict[str, Any]:
    return measure(s, port, Request("GET", path), clients, seconds, images)


def _providers(url: str) -> dict[str, Any]:
    """What each model's graphs really run on, as the service reports it."""
    return httpx.get(f"{url}/health", timeout=10).json()["providers"]


def service_figures(models_dir: Path, batching: bool, seconds: float, sweeps: bool = True) -> dict[str, Any]:
    """Cold start, memory after warm-up, bulk /sample and the concurrency sweep, for one batching setting."""
    port = free_port()
    argv = ["-m", "service", "--port", str(port), "--models-dir", str(models_dir), "--log-level", "warning"]
    with server(argv, port, {"VAE_BATCHING": str(batching).lower()}) as s:
        settle(s.url)  # every server process ready, not only the first to answer
        figures: dict[str, Any] = {"ready_s": s.ready_seconds, "rss_mib": s.rss_mib(), "providers": _providers(s.url)}
        figures["processes"] = Settings().process_count()  # the default, as this machine resolves it
        figures["rss_per_process_mib"] = s.largest_rss_mib()
        for fmt in ("npy", "png"):
            figures[f"sample256_{fmt}"] = _bulk(s, port, f"/sample?n=256&format={fmt}", 256, 1, seconds)
            figures[f"sample64_{fmt}"] = _bulk(s, port, f"/sample?n=64&format={fmt}", 64, 8, seconds)
        figures["encode"] = [measure(s, port, ENCODE, c, seconds) for c in CLIENTS]
        figures["sample1"] = [measure(s, port, Request("GET", "/sample?n=1"), c, seconds) for c in CLIENTS]
        figures["rss_after_load_mib"] = s.rss_mib()
    return figures


def peer_figures(models_dir: Path, seconds: float) -> dict[str, Any]:
    """The PyTorch-eager server: the same bulk /sample rows and the /encode sweep."""
    port = free_port()
    argv = ["-m", "bench.torch_peer", str(port), "--models-dir", str(models_dir), "--model", PEER_MODEL]
    with server(argv, port) as s:
        figures: dict[str, Any] = {"ready_s": s.ready_seconds, "rss_mib": s.rss_mib()}
        for fmt in ("npy", "png"):
            figures[f"sample256_{fmt}"] = _bulk(s, port, f"/sample?n=256&format={fmt}", 256, 1, seconds)
            figures[f"sample64_{fmt}"] = _bulk(s, port, f"/sample?n=64&format={fmt}", 64, 8, seconds)
        figures["encode"] = [measure(s, port, ENCODE, c, seconds) for c in CLIENTS]
    return figures


def empty_figures(seconds: float) -> list[dict[str, Any]]:
    port = free_port()
    with server(["-m", "bench.empty", str(port)], port) as s:
        return [measure(s, port, Request("GET", "/empty"), c, seconds) for c in CLIENTS]


def _bulk_rows(figures: dict[str, Any]) -> list[str]:
    return [
        f"| `/sample?n={n}&format={fmt}` | {row['clients']} | {row['images_per_s']:.0f} | {row['p50_ms']:.1f} "
        f"| {row['p99_ms']:.1f} | {row.get('server_cpu_ms', float('nan')):.2f} |"
        for n in (256, 64)
        for fmt in ("npy", "png")
        for row in (figures[f"sample{n}_{fmt}"],)
    ]


def report(results: dict[str, Any]) -> str:
    """BENCHMARKS.md: the machine, the targets as ratios, then every measured row; all from `results`."""
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python -m bench.run {' '.join(results['argv'])}`); every figure is also in "
        f"`{results['json']}`.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}; Python {m['python']}, "
        f"onnxruntime {m['onnxruntime']}. Every HTTP row is the median (by req/s) of {results['repeats']} run(s) of "
        f"{results['seconds']:g} s of closed-loop load from "
        f"`bench/loadgen.py` ({m['loadgen_processes']} process(es), raw keep-alive HTTP/1.1 on uvloop) on the same "
        "machine; its CPU use is in each table. Servers are one uvicorn process each, started fresh, unless a "
        "section says otherwise (LitServe runs several processes; the VAE_PROCESSES rows run two). Server CPU and "
        "resident memory count every process of a server (/proc).",
        "",
        "## Targets",
        "",
        *targets.rows(results["targets"]),
        "",
        "## Raw onnxruntime (in-process, the service's session options)",
        "",
        f"With onnxruntime's own default options, {results['raw_default']['model']}'s decoder at batch "
        f"{results['raw_default']['batch']} ran {results['raw_default']['rows_per_s']:.0f} rows/s "
        f"({results['raw_default']['median_ms']:.1f} ms); the table's sessions have the service's options (one "
        "intra-op thread, no spinning: the service splits a large batch across threads itself).",
        "",
        "| model | graph | batch | provider | median ms | rows/s |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['model']} | {r['graph']} | {r['batch']} | {r['provider']} | {r['median_ms']:.3f} "
            f"| {r['rows_per_s']:.0f} |"
            for r in results["raw"]
        ),
    ]
    servers = {f"The service, {key}": figures for key, figures in results["service"].items()}
    servers[f"PyTorch-eager FastAPI server (`bench/torch_peer.py`, {PEER_MODEL})"] = results["peer"]
    for title, figures in servers.items():
        providers = figures.get("providers")
        where = f" Providers: `{json.dumps(providers)}`." if providers else ""
        after = figures.get("rss_after_load_mib")
        lines += [
            "",
            f"## {title}",
            "",
            f"Process start to `/ready`: {figures['ready_s']:.2f} s; resident memory after warm-up: "
            f"{figures['rss_mib']:.0f} MiB" + (f" ({after:.0f} MiB after the load below)." if after else ".") + where,
            "",
            "| bulk request | clients | images/s | p50 ms | p99 ms | server CPU ms/request |",
            "|---|---|---|---|---|---|",
            *_bulk_rows(figures),
            "",
            *overhead.HEAD,
            *overhead.rows("`POST /encode` (1 image)", figures["encode"]),
            *(overhead.rows("`GET /sample?n=1`", figures["sample1"]) if "sample1" in figures else []),
        ]
    lines += [
        "",
        "## Empty FastAPI endpoint (same uvicorn stack: the framework's floor)",
        "",
        *overhead.HEAD,
        *overhead.rows("`GET /empty`", results["empty"]),
        "",
        *litserve_report(results["litserve"]),
        "",
        *peers_report(results["peers"]),
        "",
        *overhead.report(results["overhead"], results["processes"]),
        "",
        *(compare.report(results["compare"]) if results.get("compare") else []),
    ]
    return "\n".join(lines)


def litserve_report(figures: dict[str, Any]) -> list[str]:
    """The LitServe server beside the service, both on /encode with a multipart upload."""
    litserve = figures["litserve"]
    return [
        f"## LitServe server (`bench/litserve_peer.py`, {PEER_MODEL}) and the service, multipart `/encode`",
        "",
        f"LitServe: process start to `/ready`: {litserve['ready_s']:.2f} s; resident memory after warm-up (all its "
        f"processes): {litserve['rss_mib']:.0f} MiB. The service was started afresh for its rows (batching on).",
        "",
        *overhead.HEAD,
        *overhead.rows("LitServe `POST /encode` (multipart)", litserve["encode_form"]),
        *overhead.rows("the service, `POST /encode` (multipart)", figures["service"]["encode_form"]),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--seconds", type=float, default=4.0, help="load time per measured row")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 0.3 s per row, one run each, batch sizes 1 and 16"
    )
    parser.add_argument("--repeats", type=int, default=workloads.REPEATS, help="runs per HTTP row, of which the median")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args(argv)
    seconds = 0.3 if args.quick else args.seconds
    workloads.REPEATS = 1 if args.quick else args.repeats
    batches = (1, 16) if args.quick else (1, 16, 256)
    results: dict[str, Any] = {
        "argv": sys.argv[1:] if argv is None else argv,
        "seconds": seconds,
        "repeats": workloads.REPEATS,
    }
    results["json"] = args.out.with_suffix(".json").name
    results["machine"] = machine()
    results["raw"] = raw_runtime(args.models_dir, batches, seconds)
    results["raw_default"] = default_options_row(args.models_dir, PEER_MODEL, "decoder", max(batches), seconds)
    results["service"] = {
        f"batching {'on' if batching else 'off'}": service_figures(args.models_dir, batching, seconds)
        for batching in (True, False)
    }
    results["peer"] = peer_figures(args.models_dir, seconds)
    results["empty"] = empty_figures(seconds)
    results["litserve"] = litserve_figures(args.models_dir, PEER_MODEL, seconds)
    with null_models_dir() as null_dir:  # mosec and Triton on the null model: the serving stacks themselves
        results["peers"] = {
            **mosec_figures(null_dir, NULL_MODEL, seconds, service=False),
            **triton_figures(null_dir, NULL_MODEL, seconds, service=False),
            "service": service_rows(null_dir, NULL_MODEL, seconds),
        }
    results["overhead"] = overhead.null_figures(seconds)
    results["processes"] = [overhead.processes_row(args.models_dir, p, seconds) for p in (1, 2)]
    baseline = compare.load_baseline()
    results["compare"] = compare.compare(results, baseline) if baseline is not None else []
    results["targets"] = targets.targets(results, PEER_MODEL)
    text = report(results)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()

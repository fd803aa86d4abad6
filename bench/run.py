"""`python -m bench.run [--quick] [--out BENCHMARKS.md]`: run every measurement in one go and write the report.

Not done yet (the issue's list): the PyTorch-eager peer server; the ratios table against the targets.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from .load import free_port, server, sweep
from .raw import raw_runtime

CLIENTS = (1, 8, 64)


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
    }


def digit_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def service_figures(models_dir: Path, batching: bool, seconds: float) -> dict[str, Any]:
    """Cold start, memory after warm-up, bulk /sample and the concurrency sweep, for one batching setting."""
    port = free_port()
    argv = ["-m", "service", "--port", str(port), "--models-dir", str(models_dir), "--log-level", "warning"]
    env = {"VAE_BATCHING": str(batching).lower()}
    png = {"method": "POST", "url": "/encode", "content": digit_png(), "headers": {"content-type": "image/png"}}
    with server(argv, port, env) as s:
        figures: dict[str, Any] = {"ready_s": s.ready_seconds, "rss_mib": s.rss_mib()}
        for fmt in ("npy", "png"):
            bulk = sweep(s.url, {"method": "GET", "url": f"/sample?n=256&format={fmt}"}, 1, seconds)
            figures[f"sample256_{fmt}"] = {**bulk, "images_per_s": 256 * bulk["rps"]}
        figures["encode"] = [sweep(s.url, png, c, seconds) for c in CLIENTS]
        figures["sample1"] = [sweep(s.url, {"method": "GET", "url": "/sample?n=1"}, c, seconds) for c in CLIENTS]
    return figures


def empty_figures(seconds: float) -> list[dict[str, Any]]:
    port = free_port()
    with server(["-m", "bench.empty", str(port)], port) as s:
        return [sweep(s.url, {"method": "GET", "url": "/empty"}, c, seconds) for c in CLIENTS]


def _sweep_rows(name: str, results: list[dict[str, Any]]) -> list[str]:
    return [
        f"| {name} | {r['clients']} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['p99_ms']:.1f} "
        f"| {r['errors']} | {r['loadgen_cpu']:.2f} |"
        for r in results
    ]


def report(results: dict[str, Any]) -> str:
    """BENCHMARKS.md: setup, then medians; every figure comes from `results`."""
    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python -m bench.run {' '.join(results['argv'])}`).",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, GPU: {m['gpu'] or 'none'}; Python {m['python']}, "
        f"onnxruntime {m['onnxruntime']} (providers {', '.join(m['providers'])}). "
        f"Each figure: {results['seconds']:g} s of closed-loop load per row.",
        "",
        "## Raw onnxruntime (in-process)",
        "",
        "| model | graph | batch | provider | median ms | rows/s |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['model']} | {r['graph']} | {r['batch']} | {r['provider']} | {r['median_ms']:.3f} "
            f"| {r['rows_per_s']:.0f} |"
            for r in results["raw"]
        ),
    ]
    for key, figures in results["service"].items():
        lines += [
            "",
            f"## The service, {key}",
            "",
            f"Process start to `/ready`: {figures['ready_s']:.2f} s; resident memory after warm-up: "
            f"{figures['rss_mib']:.0f} MiB. `/sample?n=256`: {figures['sample256_npy']['images_per_s']:.0f} "
            f"images/s as npy, {figures['sample256_png']['images_per_s']:.0f} as png.",
            "",
            "| request | clients | req/s | p50 ms | p95 ms | p99 ms | errors | load generator CPU |",
            "|---|---|---|---|---|---|---|---|",
            *_sweep_rows("`POST /encode` (1 image)", figures["encode"]),
            *_sweep_rows("`GET /sample?n=1`", figures["sample1"]),
        ]
    lines += [
        "",
        "## Empty FastAPI endpoint (same uvicorn stack)",
        "",
        "| request | clients | req/s | p50 ms | p95 ms | p99 ms | errors | load generator CPU |",
        "|---|---|---|---|---|---|---|---|",
        *_sweep_rows("`GET /empty`", results["empty"]),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--seconds", type=float, default=5.0, help="load time per measured row")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 0.2 s per row, batch sizes 1 and 16")
    parser.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args(argv)
    seconds = 0.2 if args.quick else args.seconds
    batches = (1, 16) if args.quick else (1, 16, 256)
    results: dict[str, Any] = {"argv": sys.argv[1:] if argv is None else argv, "seconds": seconds}
    results["machine"] = machine()
    results["raw"] = raw_runtime(args.models_dir, batches, seconds)
    results["service"] = {
        f"batching {'on' if batching else 'off'}": service_figures(args.models_dir, batching, seconds)
        for batching in (True, False)
    }
    results["empty"] = empty_figures(seconds)
    text = report(results)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    print(text)


if __name__ == "__main__":
    main()

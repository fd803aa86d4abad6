"""A closed-loop HTTP load generator (asyncio + httpx) and a server process that is timed from start to /ready."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Server:
    url: str
    pid: int
    ready_seconds: float  # process start to the first 200 from /ready

    def rss_mib(self) -> float:
        """Resident memory of the server process, from /proc (Linux)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(argv: list[str], port: int, env: dict[str, str] | None = None, timeout: float = 120) -> Iterator[Server]:
    """Start `python <argv>` listening on `port`; yield once /ready answers 200; stop it afterwards."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, *argv], cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{argv} exited with {process.returncode} before /ready")
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"{argv} not ready after {timeout} s")
            time.sleep(0.01)
        yield Server(url, process.pid, time.perf_counter() - start)
    finally:
        process.terminate()
        process.wait(timeout=30)


async def _client(
    client: httpx.AsyncClient, request: dict[str, Any], end: float, latencies: list[float], errors: list[int]
) -> None:
    while time.perf_counter() < end:
        start = time.perf_counter()
        response = await client.request(**request)
        if response.status_code == 200:
            latencies.append(time.perf_counter() - start)
        else:
            errors.append(response.status_code)


async def _sweep(url: str, request: dict[str, Any], clients: int, seconds: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        await client.request(**request)  # one untimed request: connection and first-call costs
        latencies: list[float] = []
        errors: list[int] = []
        cpu, wall = time.process_time(), time.perf_counter()
        end = wall + seconds
        await asyncio.gather(*(_client(client, request, end, latencies, errors) for _ in range(clients)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    ms = 1000 * np.array(latencies or [float("nan")])
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / wall,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "loadgen_cpu": cpu / wall,  # 1.0: the load generator used one core the whole time (it is the bottleneck)
    }


def sweep(url: str, request: dict[str, Any], clients: int, seconds: float) -> dict[str, Any]:
    """`clients` closed-loop clients send `request` (httpx.request kwargs) for `seconds`: req/s and latency."""
    return asyncio.run(_sweep(url, request, clients, seconds))

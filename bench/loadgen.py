"""A closed-loop HTTP/1.1 load generator that stays out of the way: raw keep-alive sockets on uvloop, in processes.

httpx costs about 2 ms of client CPU per request, so with it the generator, not the server, set the pace (the
empty endpoint measured 360 req/s). Here each client is a coroutine that writes a prebuilt request and reads
the response by its Content-Length; clients are spread over worker processes, and the report includes the
CPU the generator used (`loadgen_cpu`, in cores) so a reader can tell when it, not the server, was the limit.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

try:  # uvicorn[standard] installs uvloop; the generator works without it, only slower
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    def wire(self, host: str, port: int) -> bytes:
        """The request's bytes on a keep-alive connection."""
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        if self.body or self.method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


class ProtocolError(Exception):
    """The server's answer was not an HTTP/1.1 response this client can frame."""


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one response; return its status code (the body is read and dropped)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    chunked = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                return status
    if length is None:
        raise ProtocolError(f"response without Content-Length or chunked framing: {head[:200]!r}")
    await reader.readexactly(length)
    return status


async def _connect(host: str, port: int, wire: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(wire)  # one untimed request: connection set-up and the server's first-call costs
    await _read_response(reader)
    return reader, writer


async def _client(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, wire: bytes, end: float, out: dict[str, list]
) -> None:
    while (sent := time.perf_counter()) < end:
        writer.write(wire)
        status = await _read_response(reader)
        if status == 200:
            out["latencies"].append(time.perf_counter() - sent)
        else:
            out["errors"].append(status)


async def _measure(host: str, port: int, wire: bytes, clients: int, seconds: float, barrier: Any) -> dict[str, Any]:
    connections = await asyncio.gather(*(_connect(host, port, wire) for _ in range(clients)))
    barrier.wait()  # every process has its connections open: start the clock together
    cpu = time.process_time()
    end = time.perf_counter() + seconds
    out: dict[str, Any] = {"latencies": [], "errors": []}
    await asyncio.gather(*(_client(r, w, wire, end, out) for r, w in connections))
    out["cpu"] = time.process_time() - cpu
    for _, writer in connections:
        writer.close()
    return out


def _worker(host: str, port: int, wire: bytes, clients: int, seconds: float, barrier: Any, results: Any) -> None:
    run = uvloop.run if uvloop is not None else asyncio.run
    try:
        results.put(run(_measure(host, port, wire, clients, seconds, barrier)))
    except Exception as e:  # reported by the parent, which would otherwise wait forever
        barrier.abort()
        results.put({"failed": f"{type(e).__name__}: {e}"})


def _split(clients: int, processes: int) -> list[int]:
    processes = max(1, min(processes, clients))
    return [clients // processes + (i < clients % processes) for i in range(processes)]


def default_processes() -> int:
    """Half the cores (the server needs the rest), at least one."""
    return max(1, (os.cpu_count() or 2) // 2)


def sweep(
    host: str, port: int, request: Request, clients: int, seconds: float, processes: int | None = None
) -> dict[str, Any]:
    """`clients` closed-loop clients send `request` for `seconds`: req/s, latency percentiles, generator CPU."""
    shares = _split(clients, processes or default_processes())
    wire = request.wire(host, port)
    context = multiprocessing.get_context("spawn")  # no inherited event loops or server state
    barrier = context.Barrier(len(shares))
    results = context.Queue()
    workers = [
        context.Process(target=_worker, args=(host, port, wire, n, seconds, barrier, results), daemon=True)
        for n in shares
    ]
    for w in workers:
        w.start()
    parts: list[dict[str, Any]] = []
    while len(parts) < len(workers):
        try:
            parts.append(results.get(timeout=1))
        except queue.Empty:
            if not any(w.is_alive() for w in workers) and results.empty():
                codes = [w.exitcode for w in workers]
                raise RuntimeError(f"load generator processes exited without results (exit codes {codes})") from None
    for w in workers:
        w.join()
    failed = [p["failed"] for p in parts if "failed" in p]
    if failed:
        raise RuntimeError(f"load generator failed: {failed[0]}")
    latencies = [x for p in parts for x in p["latencies"]]
    errors = [x for p in parts for x in p["errors"]]
    ms = 1000 * np.array(latencies or [float("nan")])
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "error_statuses": sorted(set(errors)),
        "rps": len(latencies) / seconds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        # Cores the generator's processes used while measuring: near its process count, it may be the limit.
        "loadgen_cpu": sum(p["cpu"] for p in parts) / seconds,
        "loadgen_processes": len(shares),
    }

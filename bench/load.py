"""A server process under test, timed from process start to its first 200 from /ready."""

from __future__ import annotations

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

"""A server process under test, timed from process start until it is ready; its CPU and memory from /proc.

Ready means a 200 from `GET /ready` (the service, the FastAPI peers), or from the requests a caller names instead
(a peer whose server answers before its models are loaded is asked for its models' readiness, or a real request).

CPU time and resident memory count the process and every descendant (uvicorn's worker processes with
VAE_PROCESSES > 1, LitServe's inference and API-server processes), read from /proc (Linux).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from .loadgen import Request

ROOT = Path(__file__).resolve().parents[1]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
READY = (Request("GET", "/ready"),)


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, from the parent ids in /proc/*/stat."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended while we looked
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo += parents.get(p, [])
    return found


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one live process (its ended children's times are in cutime, counted when they end)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / CLOCK_TICKS


def _started(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), or None once it has ended."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except OSError:
        return None


def _rss_mib(pid: int) -> float:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS:")), 0.0)


@dataclass
class Server:
    url: str
    pid: int
    ready_seconds: float  # process start to the first 200 from every readiness request

    def rss_mib(self) -> float:
        """Resident memory of the server process and its descendants (MiB), from /proc."""
        return sum(_rss_mib(p) for p in descendants(self.pid)) or float("nan")

    def largest_rss_mib(self) -> float:
        """Resident memory of the largest serving process (MiB): a supervisor that only starts and watches the
        serving processes is left out when there are any."""
        pids = descendants(self.pid)
        serving = pids[1:] or pids
        return max((_rss_mib(p) for p in serving), default=float("nan"))

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process and its descendants have used so far, from /proc."""
        return sum(_cpu_seconds(p) for p in descendants(self.pid))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def service_argv(models_dir: Path, port: int) -> list[str]:
    """`server()`'s argv for the service on `models_dir` at `port` (its settings from the VAE_* environment)."""
    return ["-m", "service", "--port", str(port), "--models-dir", str(models_dir), "--log-level", "warning"]


def _answers(url: str, request: Request) -> bool:
    try:
        response = httpx.request(
            request.method, url + request.path, content=request.body, headers=request.headers, timeout=1
        )
    except httpx.TransportError:
        return False
    return response.status_code == 200


@contextmanager
def server(
    argv: list[str],
    port: int,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    stop: signal.Signals = signal.SIGTERM,
    python: str | Path = sys.executable,
    ready: Sequence[Request] = READY,
) -> Iterator[Server]:
    """Start `python <argv>` listening on `port`; yield once each of `ready` answers 200 (in turn); stop it with
    `stop` afterwards. `python` is the project's interpreter unless a peer brings its own venv's."""
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(python), *argv], cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    waiting = list(ready)
    try:
        while waiting:
            if process.poll() is not None:
                raise RuntimeError(f"{argv} exited with {process.returncode} before it was ready")
            if _answers(url, waiting[0]):
                waiting.pop(0)
                continue
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"{argv} not ready after {timeout} s ({waiting[0].method} {waiting[0].path})")
            time.sleep(0.01)
        yield Server(url, process.pid, time.perf_counter() - start)
    finally:
        # A server's own processes (LitServe's workers) may outlive it: kill those still running, the same
        # processes (same start time), not others that took their ids since.
        below = {pid: _started(pid) for pid in descendants(process.pid)[1:]}
        process.send_signal(stop)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a server slow to stop (LitServe under load) must not end the run
            process.kill()
            process.wait(timeout=30)
        for pid, started in below.items():
            if started is not None and _started(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def settle(url: str, answers: int = 20, timeout: float = 60) -> None:
    """Wait until `answers` fresh connections in a row get 200 from /ready: with several server processes
    sharing the port, the first 200 says only that one of them is ready."""
    deadline = time.perf_counter() + timeout
    streak = 0
    while streak < answers:
        try:
            streak = streak + 1 if httpx.get(f"{url}/ready", timeout=1).status_code == 200 else 0
        except httpx.TransportError:
            streak = 0
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{url}: not every server process was ready after {timeout} s")
        if not streak:
            time.sleep(0.05)

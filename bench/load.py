"""A server process under test, timed from process start to its first 200 from /ready; its CPU and memory from /proc.

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


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
    ready_seconds: float  # process start to the first 200 from /ready

    def rss_mib(self) -> float:
        """Resident memory of the server process and its descendants (MiB), from /proc."""
        return sum(_rss_mib(p) for p in descendants(self.pid)) or float("nan")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server process and its descendants have used so far, from /proc."""
        return sum(_cpu_seconds(p) for p in descendants(self.pid))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(
    argv: list[str],
    port: int,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    stop: signal.Signals = signal.SIGTERM,
) -> Iterator[Server]:
    """Start `python <argv>` listening on `port`; yield once /ready answers 200; stop it with `stop` afterwards."""
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

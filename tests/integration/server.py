"""Start `python -m service` as a real uvicorn process on a free loopback port, and stop it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(models_dir: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="vae-serve-", suffix=".log")[1])
    with log.open("w") as out:  # the server writes to its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)]
            + ["--models-dir", str(models_dir)],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}", log


@contextmanager
def running_server(models_dir: Path, env: dict[str, str] | None = None, timeout: float = 60) -> Iterator[str]:
    """Yield the base URL once GET /ready answers 200; fail with the server's log if it never does."""
    with running_process(models_dir, env, timeout) as (_, url):
        yield url


@contextmanager
def running_process(
    models_dir: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> Iterator[tuple[subprocess.Popen, str]]:
    """`running_server`, yielding the server process too."""
    process, url, log = start(models_dir, env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {timeout} s:\n{log.read_text()}")
            time.sleep(0.1)
        yield process, url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.unlink(missing_ok=True)


def run_to_exit(models_dir: Path, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Start the server expecting it to refuse to start; return its exit code and output."""
    process, _, log = start(models_dir, env)
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        output = log.read_text()
        raise AssertionError(f"server kept running although it should have refused to start:\n{output}") from None
    output = log.read_text()
    log.unlink(missing_ok=True)
    return code, output

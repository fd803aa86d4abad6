"""Watch a real server while a hostile client works on it: does the event loop keep answering, does memory hold?

`watch(process, url)` polls `GET /health` on its own connection every 20 ms in a background thread while the
block runs, and records the slowest answer and the server's peak resident memory (VmHWM from /proc, reset when
the block begins) growth. A request that stalls the one event loop shows as a slow `/health`; one that expands
data shows in the peak. The server must run as one process (VAE_PROCESSES=1): with several, the attack and the
watcher's /health may reach different workers, and the process started is a supervisor that serves nothing.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

MIB = 1024 * 1024


def memory(pid: int) -> tuple[int, int]:
    """(resident bytes now, peak resident bytes so far) of a process, from /proc/PID/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024  # kB
    return values["VmRSS"], values["VmHWM"]


def reset_peak(pid: int) -> None:
    """Start the peak resident memory (VmHWM) afresh at the current resident memory, so that a block's peak is its
    own and not the start-up's (Linux: `5` to /proc/PID/clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class Watch:
    """What `watch` saw; read it after the block."""

    pid: int = 0
    slowest_health: float = 0.0  # seconds
    health_calls: int = 0
    failures: list[str] = field(default_factory=list)
    rss_before: int = 0
    peak_growth: int = 0  # bytes the peak resident memory rose above the resident memory before the block

    def assert_given_back(self, *, margin_mib: float = 25, within_s: float = 5) -> None:
        """Resident memory returns to within `margin_mib` of where it was before the block (waiting up to
        `within_s` for it: freed memory goes back when the connections holding it are gone)."""
        deadline = time.monotonic() + within_s
        while (now := memory(self.pid)[0]) > self.rss_before + margin_mib * MIB and time.monotonic() < deadline:
            time.sleep(0.1)
        assert now <= self.rss_before + margin_mib * MIB, (
            f"resident memory stayed {(now - self.rss_before) / MIB:.0f} MiB above where it was "
            f"(limit {margin_mib} MiB, after {within_s} s)"
        )

    def assert_healthy(self, *, max_stall: float = 0.5, max_growth_mib: float = 100) -> None:
        """The loop answered /health within `max_stall` seconds throughout; the peak rose by < `max_growth_mib`,
        and resident memory went back to near where it was."""
        assert not self.failures, f"/health failed while the hostile request ran: {self.failures[:3]}"
        assert self.health_calls >= 1, "the watcher made no /health call; the block ended too soon to say anything"
        assert self.slowest_health < max_stall, (
            f"the event loop stalled: /health took {self.slowest_health * 1000:.0f} ms at worst "
            f"(limit {max_stall * 1000:.0f} ms)"
        )
        assert self.peak_growth < max_growth_mib * MIB, (
            f"the server's peak resident memory rose by {self.peak_growth / MIB:.0f} MiB (limit {max_growth_mib} MiB)"
        )
        self.assert_given_back()


@contextmanager
def watch(process: subprocess.Popen, url: str, *, min_seconds: float = 0.3) -> Iterator[Watch]:
    """Poll /health during the block (at least `min_seconds`), then fill in the `Watch`."""
    if Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().strip():
        raise AssertionError("the watched server runs worker processes: start it with VAE_PROCESSES=1")
    seen = Watch(pid=process.pid)
    reset_peak(process.pid)
    seen.rss_before, _ = memory(process.pid)
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            while not stop.is_set():
                start = time.perf_counter()
                try:
                    status = client.get("/health").status_code
                except httpx.HTTPError as e:
                    seen.failures.append(f"{type(e).__name__}: {e}")
                    return
                elapsed = time.perf_counter() - start
                seen.health_calls += 1
                seen.slowest_health = max(seen.slowest_health, elapsed)
                if status != 200:
                    seen.failures.append(f"status {status}")
                stop.wait(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        yield seen
        time.sleep(max(0.0, min_seconds - (time.monotonic() - started)))
    finally:
        stop.set()
        thread.join(timeout=15)
    _, peak_after = memory(process.pid)
    seen.peak_growth = max(0, peak_after - seen.rss_before)

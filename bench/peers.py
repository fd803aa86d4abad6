"""The LitServe peer measured beside the service, with the same load generator, request and client counts.

The LitServe server (bench/litserve_peer.py) serves /encode with a multipart upload (LitServe's documented way to
send a file), so the service is measured on that same multipart request, freshly started beside it.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from .load import free_port, server
from .workloads import CLIENTS, ENCODE_FORM, measure


def litserve_figures(models_dir: Path, model: str, seconds: float) -> dict[str, Any]:
    """/encode (multipart) at every client count: the LitServe server on `model`, then the service (batching on)."""
    port = free_port()
    argv = ["-m", "bench.litserve_peer", str(port), "--models-dir", str(models_dir), "--model", model]
    with server(argv, port, stop=signal.SIGINT) as s:  # LitServe stops its workers on Ctrl-C
        litserve = {"ready_s": s.ready_seconds, "rss_mib": s.rss_mib()}
        litserve["encode_form"] = [measure(s, port, ENCODE_FORM, c, seconds) for c in CLIENTS]
    port = free_port()
    argv = ["-m", "service", "--port", str(port), "--models-dir", str(models_dir), "--log-level", "warning"]
    with server(argv, port) as s:
        service = {"encode_form": [measure(s, port, ENCODE_FORM, c, seconds) for c in CLIENTS]}
    return {"litserve": litserve, "service": service}

"""The service's onnxruntime session and provider options for one model, as JSON a peer process can read.

A peer (mosec, Triton) runs in a venv of its own that cannot import `service`; it gets this spec on its command
line and builds its sessions from it with bench/peer_runtime.py. Everything comes from the service's own code
(`service.engine.sessions.session_options`, `provider_options`, `service.engine.providers.probe`) and the engine
slice of `Settings()` (the same VAE_* environment), so a peer runs the graphs as the service does. One rule is
the peer's own: intra-op threads per session are the cores divided by the peer's worker processes, as the service
divides them by its processes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import onnxruntime as ort

from service.engine.providers import probe
from service.engine.sessions import provider_options, session_options
from service.settings import EngineSettings, Settings, cpu_cores

from .peer_runtime import ROLES, read_manifest

# The SessionOptions attributes service/engine/sessions.py sets, and its session config entries: SessionOptions cannot
# list what was set, so they are named here; tests/bench/test_session_spec.py fails when the service sets others.
SESSION_FIELDS = (
    "graph_optimization_level",
    "intra_op_num_threads",
    "inter_op_num_threads",
    "enable_cpu_mem_arena",
    "log_severity_level",
)
CONFIG_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning", "session.force_spinning_stop")


def peer_engine(workers: int, settings: Settings | None = None) -> EngineSettings:
    """The service's engine settings, with intra-op threads as a user of the peer would set them: the cores shared
    among its workers (the service runs one thread a session and splits large batches itself, which a peer cannot),
    unless VAE_THREADS names a number other than the service's default."""
    settings = settings or Settings()
    default = type(settings).model_fields["threads"].default
    threads = settings.threads if settings.threads not in (0, default) else max(1, cpu_cores() // workers)
    return settings.engine.model_copy(update={"threads": threads})


def config_entry(options: ort.SessionOptions, key: str) -> str | None:
    """A session config entry, or None where the service does not set it (onnxruntime raises for those)."""
    try:
        return options.get_session_config_entry(key)
    except Exception:  # onnxruntime's own error type for a missing entry
        return None


def session_spec(folder: Path, workers: int = 1, settings: Settings | None = None) -> dict[str, Any]:
    """The runtime spec (bench/peer_runtime.py's format) for `folder`'s graphs in a peer with `workers` processes."""
    engine = peer_engine(workers, settings)
    options = session_options(engine)
    session: dict[str, Any] = {name: getattr(options, name) for name in SESSION_FIELDS}
    session["graph_optimization_level"] = int(session["graph_optimization_level"])
    config = {key: config_entry(options, key) for key in CONFIG_KEYS}
    config = {key: value for key, value in config.items() if value is not None}
    active = probe(engine.providers).active
    providers = {}
    for role in ROLES:
        graph_bytes = (folder / read_manifest(folder)["files"][role]["path"]).stat().st_size  # sizes the CUDA arena
        providers[role] = [[name, opts] for name, opts in provider_options(active, engine, graph_bytes)]
    return {"session": session, "config": config, "providers": providers, "onnxruntime": ort.__version__}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.session_spec", description=__doc__)
    parser.add_argument("folder", type=Path, help="a model folder, e.g. models/mnist-vae")
    parser.add_argument("--workers", type=int, default=1, help="the peer's worker processes")
    args = parser.parse_args(argv)
    print(json.dumps(session_spec(args.folder, args.workers)))


if __name__ == "__main__":
    main()

"""`python -m service [--host H] [--port P] [--models-dir D]`, also installed as the `vae-serve` script."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn
from pydantic import ValidationError

from .app import create_app
from .settings import Settings


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Serve the VAE-family models in a folder over HTTP. Every option also reads a VAE_* "
        "environment variable (VAE_HOST, VAE_PORT, VAE_MODELS_DIR, ...); options win.",
    )
    parser.add_argument("--host", help="address to bind (default 127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, help="port to bind (default 8000)")
    parser.add_argument("--models-dir", help="folder with one sub-folder per model (default ./models)")
    parser.add_argument("--default-model", help="model used when a request names none")
    parser.add_argument("--providers", choices=["auto", "cpu", "cuda", "tensorrt"], help="execution providers")
    parser.add_argument("--require-gpu", action="store_true", default=None, help="refuse to start without a GPU")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--processes", type=int, help="uvicorn worker processes, each with every model (0: one per two cores)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Read options and environment into Settings, then run uvicorn on `create_app(settings)`."""
    args = parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as e:
        sys.exit(f"invalid settings: {e}")
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    processes = process_count(settings)
    if processes == 1:
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level)
        return
    # Worker processes build their own app from the environment: hand the command-line options down that way.
    for key, value in overrides.items():
        os.environ[f"VAE_{key.upper()}"] = str(value)
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        workers=processes,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
    )


def process_count(settings: Settings) -> int:
    """VAE_PROCESSES, or with 0 one process per two cores (each process's event loop and onnxruntime threads
    want about that much)."""
    return settings.processes or max(1, (os.cpu_count() or 1) // 2)


if __name__ == "__main__":
    main()

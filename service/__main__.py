"""`python -m service [--host H] [--port P] [--models-dir D]`, also installed as the `vae-serve` script."""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import PackageNotFoundError, version

from pydantic import ValidationError

from .http.server import serve
from .settings import Settings


def installed_version() -> str:
    try:
        return version("vae-service")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Serve the VAE-family models in a folder over HTTP. Every option also reads a VAE_* "
        "environment variable (VAE_HOST, VAE_PORT, VAE_MODELS_DIR, ...); options win.",
    )
    parser.add_argument("--version", action="version", version=f"vae-serve {installed_version()}")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1; 0.0.0.0 in a container)")
    parser.add_argument("--port", type=int, help="port to bind (default 8000)")
    parser.add_argument("--models-dir", help="folder with one sub-folder per model (default ./models)")
    parser.add_argument("--default-model", help="model used when a request names none")
    parser.add_argument("--providers", choices=["auto", "cpu", "cuda", "tensorrt"], help="execution providers")
    parser.add_argument("--require-gpu", action="store_true", default=None, help="refuse to start without a GPU")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    parser.add_argument(
        "--processes",
        help="server processes, each with every model (auto: one per core, at most one per GiB of available memory)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Read options and environment into Settings, then serve them with uvicorn (service/http/server.py)."""
    args = parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as e:
        sys.exit(f"invalid settings: {e}")
    # Server processes get the settings themselves (pickled), options included.
    serve(settings)


if __name__ == "__main__":
    main()

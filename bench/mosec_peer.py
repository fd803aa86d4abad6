"""A mosec peer: mosec's Rust HTTP server and dynamic batcher in front of Python workers running the same ONNX graphs.

Run in the mosec venv (bench/venvs.py), from the repository root:

    .bench/venvs/mosec/bin/python -m bench.mosec_peer --port 8100 --address 127.0.0.1 --model mnist-vae \\
        --runtime "$(.venv/bin/python -m bench.session_spec models/mnist-vae)" [--workers 2]

Routes, on the service's request bodies:
- `POST /encode`: one raw PNG; JSON {"mu": [[...]], "logvar": [[...]]}. mosec batches up to --max-batch-rows
  requests, waiting at most --max-batch-delay-ms (the service's VAE_MAX_BATCH_ROWS / VAE_MAX_BATCH_DELAY_MS);
  each PNG is decoded in `deserialize`, and `forward` runs the encoder once per batch.
- `POST /decode`: a .npy float32 [N, latent_dim]; the decoder's `image` as .npy float32 [N, C, H, W]. One request
  per call: each is already N rows.
- `GET /`: mosec's own liveness answer (its other GET routes are reserved: a worker cannot add one).
Each route has --workers processes; sessions use the service's options (bench/session_spec.py, --runtime), whose
intra-op threads follow from the cores and that worker count. mosec reads its own flags (--port, --address,
--log-level, --timeout, ...) from the same command line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from mosec import Server, Worker
from mosec.errors import DecodingError, EncodingError

from bench.peer_runtime import open_session, png_to_array, read_manifest

CONFIG_VAR = "BENCH_MOSEC_PEER"  # the worker processes' configuration, set through mosec's per-worker `env`


def _config() -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The model folder, its manifest and the runtime spec, as the main process passed them to this worker."""
    config = json.loads(os.environ[CONFIG_VAR])
    folder = Path(config["folder"])
    return folder, read_manifest(folder), config["runtime"]


class Encoder(Worker):
    """q(z|x): a batch of PNGs in, one JSON answer per PNG out."""

    def __init__(self) -> None:
        super().__init__()
        folder, manifest, runtime = _config()
        self.image = manifest["image"]
        self.outputs = [o["name"] for o in manifest["files"]["encoder"]["outputs"]]
        self.session = open_session(folder, "encoder", runtime)

    def deserialize(self, data: bytes) -> np.ndarray:
        try:
            return png_to_array(data, self.image)  # [C, H, W]
        except Exception as e:  # Pillow raises several types for bytes that are not an image
            raise DecodingError(f"the body is not a {self.image['width']}x{self.image['height']} PNG: {e}") from e

    def forward(self, data: list[np.ndarray]) -> list[dict[str, list]]:
        outputs = self.session.run(self.outputs, {"image": np.stack(data)})  # each [N, D]
        results = dict(zip(self.outputs, outputs, strict=True))
        return [{name: [values[i].tolist()] for name, values in results.items()} for i in range(len(data))]

    def serialize(self, data: dict[str, list]) -> bytes:
        return json.dumps(data, separators=(",", ":")).encode()


class Decoder(Worker):
    """p(x|z): a .npy of latents in, the decoder's `image` as .npy out; one request per call."""

    resp_mime_type = "application/x-npy"

    def __init__(self) -> None:
        super().__init__()
        folder, manifest, runtime = _config()
        self.latent_dim = manifest["latent_dim"]
        self.session = open_session(folder, "decoder", runtime)

    def deserialize(self, data: bytes) -> np.ndarray:
        try:
            z = np.load(io.BytesIO(data), allow_pickle=False)
        except Exception as e:  # numpy raises ValueError or OSError for a body that is not a .npy
            raise DecodingError(f"the body is not a .npy array: {e}") from e
        if z.dtype != np.float32 or z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise DecodingError(f"expected float32 [N, {self.latent_dim}], got {z.dtype} {list(z.shape)}")
        return z

    def forward(self, data: np.ndarray) -> np.ndarray:
        return self.session.run(["image"], {"z": data})[0]  # [N, C, H, W]

    def serialize(self, data: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        try:
            np.save(buffer, data)
        except Exception as e:
            raise EncodingError(str(e)) from e
        return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.mosec_peer", description=__doc__, allow_abbrev=False)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--model", default="mnist-vae")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per route")
    parser.add_argument("--runtime", required=True, help="the runtime spec JSON (bench/session_spec.py)")
    parser.add_argument("--max-batch-rows", type=int, default=64, help="/encode: requests per batch")
    parser.add_argument("--max-batch-delay-ms", type=int, default=2, help="/encode: wait for a batch (>= 1)")
    args, _ = parser.parse_known_args()  # the rest are mosec's own flags
    config = json.dumps({"folder": str((args.models_dir / args.model).resolve()), "runtime": json.loads(args.runtime)})
    env = [{CONFIG_VAR: config}] * args.workers
    server = Server()
    server.append_worker(
        Encoder,
        num=args.workers,
        max_batch_size=args.max_batch_rows,
        max_wait_time=args.max_batch_delay_ms,
        env=env,
        route="/encode",
    )
    server.append_worker(Decoder, num=args.workers, env=env, route="/decode")
    server.run()


if __name__ == "__main__":
    main()

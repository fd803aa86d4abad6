"""A Triton peer: Triton Inference Server's C++ HTTP front end and dynamic batcher (PyTriton), on the same ONNX graphs.

Run in the Triton venv (bench/venvs.py), from the repository root, with the interpreter's lib/ (libpython) on
LD_LIBRARY_PATH, which Triton's Python backend stub needs when the system's libpython differs:

    LD_LIBRARY_PATH=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))') \\
    .bench/venvs/triton/bin/python -m bench.triton_peer --port 8100 --models-dir models --model mnist-vae \\
        --runtime "$(.venv/bin/python -m bench.session_spec models/mnist-vae)"

Two models on the Open Inference Protocol (v2) HTTP API, `POST /v2/models/{name}/infer`:
- `encoder`: input `image`, BYTES, one PNG per row (a request of one image has shape [1, 1]); outputs `mu` and
  `logvar`, FP32 [N, latent_dim]. Triton's dynamic batcher gathers up to --max-batch-rows rows, waiting at most
  --max-batch-delay-ms (the service's VAE_MAX_BATCH_ROWS / VAE_MAX_BATCH_DELAY_MS); the PNGs are decoded and the
  encoder runs once per batch.
- `decoder`: input `z`, FP32 [N, latent_dim] (N up to --max-latents, the service's VAE_MAX_LATENTS); output
  `image`, FP32 [N, C, H, W]. No dynamic batcher: each request is one call, as on the service.
Readiness: `GET /v2/health/ready`, and per model `GET /v2/models/{name}/ready`. gRPC and metrics are off, so two
runs clash only if given the same HTTP port. Sessions use the service's options (bench/session_spec.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from bench.peer_runtime import open_session, png_to_array, read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.triton_peer", description=__doc__)
    parser.add_argument("--port", type=int, required=True, help="Triton's HTTP port")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--model", default="mnist-vae")
    parser.add_argument("--runtime", required=True, help="the runtime spec JSON (bench/session_spec.py)")
    parser.add_argument("--max-batch-rows", type=int, default=64, help="encoder: rows per dynamic batch")
    parser.add_argument("--max-batch-delay-ms", type=float, default=2.0, help="encoder: wait for a batch")
    parser.add_argument("--max-latents", type=int, default=1024, help="decoder: rows per request")
    args = parser.parse_args()
    folder = args.models_dir / args.model
    manifest = read_manifest(folder)
    runtime = json.loads(args.runtime)
    spec, latent_dim = manifest["image"], manifest["latent_dim"]
    encoder = open_session(folder, "encoder", runtime)
    decoder = open_session(folder, "decoder", runtime)

    @batch
    def encode(image: np.ndarray) -> dict[str, np.ndarray]:
        """image: [N, 1] PNG bytes -> mu, logvar [N, latent_dim]."""
        x = np.stack([png_to_array(bytes(row[0]), spec) for row in image])  # [N, C, H, W]
        mu, logvar = encoder.run(["mu", "logvar"], {"image": x})
        return {"mu": mu, "logvar": logvar}

    @batch
    def decode(z: np.ndarray) -> dict[str, np.ndarray]:
        """z: [N, latent_dim] -> image [N, C, H, W]."""
        return {"image": decoder.run(["image"], {"z": z})[0]}

    shape = (spec["channels"], spec["height"], spec["width"])
    config = TritonConfig(http_address="127.0.0.1", http_port=args.port, allow_grpc=False, allow_metrics=False)
    with Triton(config=config) as triton:
        triton.bind(
            model_name="encoder",
            infer_func=encode,
            inputs=[Tensor(name="image", dtype=np.bytes_, shape=(1,))],
            outputs=[Tensor(name=n, dtype=np.float32, shape=(latent_dim,)) for n in ("mu", "logvar")],
            config=ModelConfig(
                max_batch_size=args.max_batch_rows,
                batcher=DynamicBatcher(max_queue_delay_microseconds=round(1000 * args.max_batch_delay_ms)),
            ),
        )
        triton.bind(
            model_name="decoder",
            infer_func=decode,
            inputs=[Tensor(name="z", dtype=np.float32, shape=(latent_dim,))],
            outputs=[Tensor(name="image", dtype=np.float32, shape=shape)],
            config=ModelConfig(max_batch_size=args.max_latents, batcher=None),
        )
        triton.serve()  # until SIGINT


if __name__ == "__main__":
    main()

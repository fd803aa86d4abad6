"""The second peer: a LitServe server on the same ONNX encoder, as LitServe's documentation shows, with its batching.

`python -m bench.litserve_peer PORT [--models-dir models] [--model mnist-vae]` serves `POST /encode` (the image as a
multipart file upload, LitServe's documented way to send one) answering JSON mu/logvar, like the service's
/encode. The shape is the documented one: `setup` opens an onnxruntime session on the device LitServe picks (CUDA
when `nvidia-smi` finds a GPU, else the CPU); `decode_request -> batch -> predict -> unbatch -> encode_response`
with `max_batch_size` and `batch_timeout` set to the service's own batching defaults (64 rows, 2 ms).
`/ready` is LitServe's health check (200 once the inference worker has run `setup`).
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import litserve as ls
import numpy as np
import onnxruntime as ort
from PIL import Image

MAX_BATCH_SIZE = 64  # the service's VAE_MAX_BATCH_ROWS
BATCH_TIMEOUT_S = 0.002  # the service's VAE_MAX_BATCH_DELAY_MS


class EncoderAPI(ls.LitAPI):
    """q(z|x) of one model: a PNG in, the posterior's mu and logvar out."""

    def __init__(self, folder: Path) -> None:
        super().__init__(max_batch_size=MAX_BATCH_SIZE, batch_timeout=BATCH_TIMEOUT_S, api_path="/encode")
        self.folder = folder

    def setup(self, device: str) -> None:
        manifest = json.loads((self.folder / "manifest.json").read_text())
        self.size = (manifest["image"]["width"], manifest["image"]["height"])
        self.outputs = [o["name"] for o in manifest["files"]["encoder"]["outputs"]]
        providers: list = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            index = int(device.partition(":")[2] or 0)
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": index}))
        path = self.folder / manifest["files"]["encoder"]["path"]
        self.session = ort.InferenceSession(str(path), providers=providers)

    def decode_request(self, request):  # a multipart form: the upload is in the field "image"
        image = Image.open(io.BytesIO(request["image"].file.read())).convert("L").resize(self.size)
        return np.asarray(image, dtype=np.float32)[None] / 255.0  # [1, H, W]; LitAPI.batch stacks to [N, 1, H, W]

    def predict(self, x: np.ndarray) -> list[dict[str, np.ndarray]]:
        results = self.session.run(self.outputs, {"image": x})
        return [dict(zip(self.outputs, row, strict=True)) for row in zip(*results, strict=True)]

    def unbatch(self, output: list) -> list:
        return output

    def encode_response(self, output: dict[str, np.ndarray]) -> dict:
        return {name: [value.tolist()] for name, value in output.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.litserve_peer", description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--model", default="mnist-vae")
    args = parser.parse_args()
    server = ls.LitServer(EncoderAPI(args.models_dir / args.model), accelerator="auto", healthcheck_path="/ready")
    server.run(host="127.0.0.1", port=args.port, log_level="warning", generate_client_file=False)


if __name__ == "__main__":
    main()

"""The peer to beat: a plain PyTorch-eager FastAPI server, as a user would write it from the PyTorch VAE example.

`python -m bench.torch_peer PORT [--models-dir models] [--model mnist-vae]` serves `GET /sample?n=&format=png|npy`
and `POST /encode` (a raw PNG body, JSON mu/logvar), with the model in eval mode under `torch.inference_mode()`,
one request at a time per call, no batching, on uvicorn like the service.

The weights are the shipped model's own: the networks are rebuilt from `training.networks` with the manifest's
shapes, and their parameters are read from the exported ONNX graphs, whose initializers carry the checkpoint's
state-dict names (checkpoints are not in git, the ONNX files are). Start-up checks that the PyTorch modules
reproduce the ONNX graphs' outputs, so both servers compute the same function.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import uvicorn
from fastapi import FastAPI, Request, Response
from onnx import numpy_helper
from PIL import Image

from training.networks import AutoEncoder, NetConfig


def load_torch_model(folder: Path) -> tuple[AutoEncoder, dict]:
    """The AutoEncoder whose weights are the ones in `folder`'s encoder.onnx and decoder.onnx."""
    manifest = json.loads((folder / "manifest.json").read_text())
    image = manifest["image"]
    labels = manifest.get("labels")
    cfg = NetConfig(
        kind=manifest["kind"],
        channels=image["channels"],
        height=image["height"],
        width=image["width"],
        latent_dim=manifest["latent_dim"],
        num_classes=len(labels) if labels else None,
    )
    model = AutoEncoder(cfg).eval()
    state: dict[str, torch.Tensor] = {}
    for role in ("encoder", "decoder"):
        graph = onnx.load(str(folder / manifest["files"][role]["path"]))
        state |= {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.graph.initializer}
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in state and k != "log_sigma"]
    if missing:
        raise SystemExit(f"{folder}: the ONNX graphs lack {missing}; the network shape differs from NetConfig's")
    model.load_state_dict({k: state.get(k, v) for k, v in wanted.items()})
    check_parity(model, folder, manifest)
    return model, manifest


def check_parity(model: AutoEncoder, folder: Path, manifest: dict) -> None:
    image = manifest["image"]
    x = np.random.default_rng(0).random((4, image["channels"], image["height"], image["width"]), dtype=np.float32)
    z = np.random.default_rng(1).standard_normal((4, manifest["latent_dim"]), dtype=np.float32)
    if manifest["kind"] == "cvae":
        return  # the peer serves an unconditional model; a cvae needs labels on both sides
    encoder = ort.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(folder / "decoder.onnx"), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        mu, _ = model.encoder(torch.from_numpy(x))
        images = torch.sigmoid(model.decoder(torch.from_numpy(z)))
    gaps = (
        np.abs(mu.numpy() - encoder.run(["mu"], {"image": x})[0]).max(),
        np.abs(images.numpy() - decoder.run(["image"], {"z": z})[0]).max(),
    )
    if max(gaps) > 1e-4:
        raise SystemExit(f"{folder}: PyTorch and ONNX disagree by {max(gaps):.2e}; not the same weights")


def build_app(model: AutoEncoder, manifest: dict) -> FastAPI:
    app = FastAPI()
    shape = manifest["image"]
    latent_dim = manifest["latent_dim"]

    @app.get("/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.get("/sample")
    def sample(n: int = 16, format: str = "png") -> Response:  # noqa: A002 - the service's parameter name
        with torch.inference_mode():
            images = torch.sigmoid(model.decoder(torch.randn(n, latent_dim))).numpy()
        if format == "npy":
            buffer = io.BytesIO()
            np.save(buffer, images)
            return Response(buffer.getvalue(), media_type="application/x-npy")
        columns = math.ceil(math.sqrt(n))
        rows = math.ceil(n / columns)
        h, w = shape["height"], shape["width"]
        canvas = np.zeros((rows * h, columns * w), np.float32)
        for i, im in enumerate(images[:, 0]):
            canvas[(i // columns) * h : (i // columns + 1) * h, (i % columns) * w : (i % columns + 1) * w] = im
        buffer = io.BytesIO()
        Image.fromarray((canvas * 255).astype(np.uint8)).save(buffer, format="PNG")
        return Response(buffer.getvalue(), media_type="image/png")

    @app.post("/encode")
    async def encode(request: Request) -> dict:
        image = Image.open(io.BytesIO(await request.body())).convert("L").resize((shape["width"], shape["height"]))
        x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None, None]
        with torch.inference_mode():
            mu, logvar = model.encoder(x)
        return {"mu": mu.tolist(), "logvar": None if logvar is None else logvar.tolist()}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.torch_peer", description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--model", default="mnist-vae")
    args = parser.parse_args()
    model, manifest = load_torch_model(args.models_dir / args.model)
    uvicorn.run(build_app(model, manifest), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

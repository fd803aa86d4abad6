"""The null model: a valid VAE model folder whose graphs do almost nothing, so that serving costs stand alone.

It has the shipped models' shapes (1x28x28 images, 32 latent dimensions as four of the five have, a Bernoulli
decoder with `logits`), so requests, rendering and batching cost what they cost on them, but each graph is one
MatMul per output:
encoder `image` [N, 1, 28, 28] -> Flatten -> MatMul -> `mu`, `logvar` [N, 32]; decoder `z` [N, 32] -> MatMul ->
Reshape -> `logits` [N, 1, 28, 28] -> Sigmoid -> `image`. Built with onnx.helper (no torch) into a folder made at
run time: it is a benchmark instrument, never a shipped model.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vaeformat.files import sha256_file
from vaeformat.manifest import Manifest, write_manifest

NAME = "null-vae"
CHANNELS, SIZE, LATENT = 1, 28, 32  # the shipped models' image shape, and the latent size of all but mnist-vae (16)
OPSET = 17


def _graph(path: Path, nodes: list, inputs: list, outputs: list, weights: dict[str, np.ndarray]) -> None:
    initializers = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    graph = helper.make_graph(nodes, path.stem, inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="bench.null_model")
    model.ir_version = 8  # readable by any onnxruntime >= 1.15
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _f32(name: str, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _spec(name: str, shape: list[int | str]) -> dict:
    return {"name": name, "dtype": "float32", "shape": shape}


def write_null_model(root: Path, name: str = NAME) -> Path:
    """Write `root/name/` (encoder.onnx, decoder.onnx, manifest.json with their sha256s); return the folder."""
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pixels = CHANNELS * SIZE * SIZE
    image: list[int | str] = ["N", CHANNELS, SIZE, SIZE]
    latent: list[int | str] = ["N", LATENT]

    encoder: dict[str, np.ndarray] = {
        "W_mu": (rng.standard_normal((pixels, LATENT)) / np.sqrt(pixels)).astype(np.float32),
        "W_logvar": (0.01 * rng.standard_normal((pixels, LATENT))).astype(np.float32),
    }
    _graph(
        folder / "encoder.onnx",
        [
            helper.make_node("Flatten", ["image"], ["x"], axis=1),  # [N, 784]
            helper.make_node("MatMul", ["x", "W_mu"], ["mu"]),
            helper.make_node("MatMul", ["x", "W_logvar"], ["logvar"]),
        ],
        [_f32("image", image)],
        [_f32("mu", latent), _f32("logvar", latent)],
        encoder,
    )
    decoder: dict[str, np.ndarray] = {
        "W": rng.standard_normal((LATENT, pixels)).astype(np.float32),
        "shape": np.array([-1, CHANNELS, SIZE, SIZE], np.int64),
    }
    _graph(
        folder / "decoder.onnx",
        [
            helper.make_node("MatMul", ["z", "W"], ["flat"]),  # [N, 784]
            helper.make_node("Reshape", ["flat", "shape"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["image"]),
        ],
        [_f32("z", latent)],
        [_f32("image", image), _f32("logits", image)],
        decoder,
    )
    manifest = Manifest.model_validate(
        {
            "name": name,
            "version": "0",
            "kind": "vae",
            "description": "null model for benchmarks: one MatMul per output, no training",
            "created": "2026-01-01T00:00:00Z",
            "image": {"channels": CHANNELS, "height": SIZE, "width": SIZE},
            "latent_dim": LATENT,
            "likelihood": "bernoulli",
            "files": {
                "encoder": {
                    "path": "encoder.onnx",
                    "sha256": sha256_file(folder / "encoder.onnx"),
                    "inputs": [_spec("image", image)],
                    "outputs": [_spec("mu", latent), _spec("logvar", latent)],
                },
                "decoder": {
                    "path": "decoder.onnx",
                    "sha256": sha256_file(folder / "decoder.onnx"),
                    "inputs": [_spec("z", latent)],
                    "outputs": [_spec("image", image), _spec("logits", image)],
                },
            },
            "training": {
                "dataset": "none",
                "split": {
                    "seed": 0,
                    "stratified": False,
                    "train_size": 0,
                    "validation_size": 0,
                    "test_size": 0,
                    "test_indices": [],
                },
                "seed": 0,
                "epochs": 0,
                "best_epoch": 0,
                "batch_size": 1,
                "learning_rate": 0.0,
                "beta": 1.0,
                "warmup_epochs": 0,
                "free_bits": 0.0,
                "augment_shift": 0,
                "train_seconds": 0.0,
                "library_versions": {"onnx": onnx.__version__},
            },
            "metrics": {"n_images": 0, "active_units": LATENT, "recon_squared_error": 0.0},
        }
    )
    write_manifest(folder, manifest)
    return folder


@contextmanager
def null_models_dir() -> Iterator[Path]:
    """A temporary models folder holding only the null model (so it is the default model); removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="vae-null-model-") as root:
        write_null_model(Path(root))
        yield Path(root)

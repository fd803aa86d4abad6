"""Tiny model folders that follow the ONNX graph contract, built with onnx.helper (no torch needed).

Encoder: flatten -> linear -> mu (+ a label embedding when conditioned), linear -> logvar (not for an ae).
Decoder: linear (+ label embedding) -> logits -> sigmoid -> reshape [N, C, H, W]. Weights are seeded, so two
builds give identical files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from vaeformat.contract import LABEL_CLASSES_KEY
from vaeformat.files import sha256_file
from vaeformat.manifest import Manifest, write_manifest

OPSET = 17


def _tensor(name: str, dtype: str, shape: list) -> onnx.ValueInfoProto:
    elem = TensorProto.FLOAT if dtype == "float32" else TensorProto.INT64
    return helper.make_tensor_value_info(name, elem, shape)


def _save(path: Path, nodes: list, inputs: list, outputs: list, weights: dict[str, np.ndarray]) -> None:
    graph = helper.make_graph(
        nodes, path.stem, inputs, outputs, initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="tiny_models")
    model.ir_version = 8  # readable by any onnxruntime >= 1.15
    tables = [weights[n.input[0]] for n in nodes if n.op_type == "Gather" and n.input[1] == "label"]
    if tables:  # the class count the service checks labels against, as the export writes it
        helper.set_model_props(model, {LABEL_CLASSES_KEY: str(len(tables[0]))})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def spec(name: str, dtype: str, shape: list) -> dict:
    return {"name": name, "dtype": dtype, "shape": shape}


def build_model(
    folder: Path,
    *,
    name: str = "tiny-vae",
    kind: str = "vae",
    channels: int = 1,
    size: int = 8,
    latent_dim: int = 4,
    labels: list[str] | None = None,
    encoder_conditioned: bool = False,
    iw_bound: float | None = 100.0,
    seed: int = 0,
    likelihood: str = "bernoulli",
    dataset: str = "none",
    reports: dict[str, str] | None = None,
) -> Manifest:
    """Write encoder.onnx, decoder.onnx and manifest.json (with true sha256s) into `folder`.

    `reports` is the manifest's list of report files (name -> path); the files themselves are the caller's.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    c, h, w, d = channels, size, size, latent_dim
    pixels = c * h * w
    k = len(labels or [])
    f32 = np.float32

    # Encoder.
    enc_w = {"W_mu": (rng.standard_normal((pixels, d)) / np.sqrt(pixels)).astype(f32), "b_mu": np.zeros(d, f32)}
    nodes = [helper.make_node("Flatten", ["image"], ["x"], axis=1), helper.make_node("MatMul", ["x", "W_mu"], ["xw"])]
    enc_in = [_tensor("image", "float32", ["N", c, h, w])]
    if encoder_conditioned:
        enc_w["E_mu"] = rng.standard_normal((k, d)).astype(f32)
        enc_in.append(_tensor("label", "int64", ["N"]))
        nodes += [
            helper.make_node("Gather", ["E_mu", "label"], ["emb"], axis=0),
            helper.make_node("Add", ["xw", "emb"], ["xwe"]),
            helper.make_node("Add", ["xwe", "b_mu"], ["mu"]),
        ]
    else:
        nodes.append(helper.make_node("Add", ["xw", "b_mu"], ["mu"]))
    enc_out = [_tensor("mu", "float32", ["N", d])]
    if kind != "ae":
        enc_w["W_lv"] = (0.1 * rng.standard_normal((pixels, d))).astype(f32)
        enc_w["b_lv"] = np.full(d, -2.0, f32)
        nodes += [
            helper.make_node("MatMul", ["x", "W_lv"], ["xl"]),
            helper.make_node("Add", ["xl", "b_lv"], ["logvar"]),
        ]
        enc_out.append(_tensor("logvar", "float32", ["N", d]))
    _save(folder / "encoder.onnx", nodes, enc_in, enc_out, enc_w)

    # Decoder.
    dec_w: dict[str, np.ndarray] = {
        "W_d": rng.standard_normal((d, pixels)).astype(f32),
        "b_d": np.zeros(pixels, f32),
        "shape": np.array([-1, c, h, w], np.int64),
    }
    nodes = [helper.make_node("MatMul", ["z", "W_d"], ["zw"])]
    dec_in = [_tensor("z", "float32", ["N", d])]
    if labels is not None:
        dec_w["E_d"] = (2 * rng.standard_normal((k, pixels))).astype(f32)
        dec_in.append(_tensor("label", "int64", ["N"]))
        nodes += [
            helper.make_node("Gather", ["E_d", "label"], ["demb"], axis=0),
            helper.make_node("Add", ["zw", "demb"], ["zwe"]),
            helper.make_node("Add", ["zwe", "b_d"], ["flat"]),
        ]
    else:
        nodes.append(helper.make_node("Add", ["zw", "b_d"], ["flat"]))
    nodes += [
        helper.make_node("Reshape", ["flat", "shape"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["image"]),
    ]
    dec_out = [_tensor("image", "float32", ["N", c, h, w]), _tensor("logits", "float32", ["N", c, h, w])]
    _save(folder / "decoder.onnx", nodes, dec_in, dec_out, dec_w)

    def io(inputs: list, outputs: list) -> tuple[list, list]:
        def one(t: onnx.ValueInfoProto) -> dict:
            dims = [x.dim_param or x.dim_value for x in t.type.tensor_type.shape.dim]
            dtype = "float32" if t.type.tensor_type.elem_type == TensorProto.FLOAT else "int64"
            return spec(t.name, dtype, dims)

        return [one(t) for t in inputs], [one(t) for t in outputs]

    enc_inputs, enc_outputs = io(enc_in, enc_out)
    dec_inputs, dec_outputs = io(dec_in, dec_out)
    manifest = Manifest.model_validate(
        {
            "name": name,
            "version": "0.0.1",
            "kind": kind,
            "description": f"tiny {kind} for tests",
            "created": "2026-01-01T00:00:00Z",
            "image": {"channels": c, "height": h, "width": w},
            "latent_dim": d,
            "labels": labels,
            "encoder_conditioned": encoder_conditioned,
            "likelihood": likelihood,
            "gaussian_sigma": 0.1 if likelihood == "gaussian" else None,
            "reports": reports or {},
            "files": {
                "encoder": {
                    "path": "encoder.onnx",
                    "sha256": sha256_file(folder / "encoder.onnx"),
                    "inputs": enc_inputs,
                    "outputs": enc_outputs,
                },
                "decoder": {
                    "path": "decoder.onnx",
                    "sha256": sha256_file(folder / "decoder.onnx"),
                    "inputs": dec_inputs,
                    "outputs": dec_outputs,
                },
            },
            "training": {
                "dataset": dataset,
                "seed": seed,
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
                "split": {
                    "seed": 0,
                    "stratified": False,
                    "train_size": 0,
                    "validation_size": 0,
                    "test_size": 2,
                    "test_indices": [0, 1],
                },
            },
            "metrics": {"n_images": 2, "active_units": d, "recon_squared_error": 1.0, "iw_bound": iw_bound},
        }
    )
    write_manifest(folder, manifest)
    return manifest


def build_zoo(root: Path) -> Path:
    """Three tiny models: an ae, a vae, and a cvae whose encoder is conditioned, with named classes."""
    build_model(root / "tiny-ae", name="tiny-ae", kind="ae", seed=1)
    build_model(root / "tiny-vae", name="tiny-vae", kind="vae", seed=2)
    build_model(
        root / "tiny-cvae",
        name="tiny-cvae",
        kind="cvae",
        labels=["zero", "one", "two"],
        encoder_conditioned=True,
        seed=3,
    )
    return root

"""ONNX export of the encoder and decoder graphs, checked against PyTorch before anything is written as done."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from vaeformat.contract import LABEL_CLASSES_KEY
from vaeformat.files import sha256_file
from vaeformat.manifest import GraphFile, TensorSpec

from .networks import AutoEncoder, DecoderGraph, EncoderGraph

PARITY_BATCHES = (1, 7, 64)
PARITY_ATOL = 1e-5
# Logits reach |20| and more, where float32 spacing alone is ~2e-6 and conv kernels sum in different orders:
# those are compared relative to their size too (allclose's rule), images and codes stay within 1e-5 absolute.
PARITY_RTOL = 1e-5
OPSET = 18
ORT_DTYPES = {"tensor(float)": "float32", "tensor(int64)": "int64"}


class ExportError(Exception):
    """onnxruntime does not compute what PyTorch computes; the exported model must not ship."""


def _example_inputs(model: AutoEncoder, role: str, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    cfg = model.cfg
    if role == "encoder":
        inputs = {"image": torch.rand(n, cfg.channels, cfg.height, cfg.width, generator=gen)}
    else:
        inputs = {"z": torch.randn(n, cfg.latent_dim, generator=gen)}
    if cfg.conditional:
        inputs["label"] = torch.randint(0, cfg.classes, (n,), generator=gen)
    return inputs


def _graph(model: AutoEncoder, role: str, likelihood: str) -> tuple[torch.nn.Module, list[str]]:
    if role == "encoder":
        return EncoderGraph(model).eval(), ["mu", "logvar"] if model.cfg.stochastic else ["mu"]
    with_logits = likelihood == "bernoulli"
    return DecoderGraph(model, with_logits).eval(), ["image", "logits"] if with_logits else ["image"]


def _check_parity(module: torch.nn.Module, path: Path, model: AutoEncoder, role: str, names: list[str]) -> float:
    """Largest |onnxruntime - PyTorch| over the parity batch sizes; raises ExportError past PARITY_ATOL."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(1234)
    worst = 0.0
    for n in PARITY_BATCHES:
        inputs = _example_inputs(model, role, n, gen)
        with torch.no_grad():
            expected = module(**inputs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(names, {k: v.numpy() for k, v in inputs.items()})
        for name, e, g in zip(names, expected, got, strict=True):
            if g.shape != tuple(e.shape):
                raise ExportError(
                    f"{path.name}: output {name!r} at batch {n} has shape {g.shape}, PyTorch {tuple(e.shape)}"
                )
            e = e.numpy()
            err = float(np.abs(g - e).max())
            worst = max(worst, err)
            if not np.allclose(g, e, atol=PARITY_ATOL, rtol=PARITY_RTOL):
                raise ExportError(
                    f"{path.name}: output {name!r} at batch {n} differs from PyTorch by {err:.2e} "
                    f"(allowed {PARITY_ATOL:.0e} + {PARITY_RTOL:.0e} x |value|)"
                )
    return worst


def describe_graph(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's real inputs and outputs, as onnxruntime reports them (dynamic axes by name)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def spec(arg) -> TensorSpec:
        shape = [d if isinstance(d, int) else "N" for d in arg.shape]
        return TensorSpec(name=arg.name, dtype=ORT_DTYPES[arg.type], shape=shape)

    return [spec(a) for a in session.get_inputs()], [spec(a) for a in session.get_outputs()]


def strip_debug_metadata(path: Path) -> None:
    """Drop the exporter's per-node debug records (stack traces with absolute source paths, FX names).

    They change with the checkout's location, so without this the same weights would hash differently on
    every machine; onnxruntime never reads them.
    """
    model = onnx.load(str(path))
    del model.graph.metadata_props[:]
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    onnx.save(model, str(path))


def label_classes(model: onnx.ModelProto) -> int | None:
    """Rows of the table the graph looks `label` up in (the data of the Gather fed by input 'label'), if any."""
    tables = {t.name: list(t.dims) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Gather" and list(node.input[1:2]) == ["label"] and node.input[0] in tables:
            return tables[node.input[0]][0]
    return None


def stamp_label_classes(path: Path) -> int | None:
    """Write the graph's class count into its metadata (vaeformat/contract.py, LABEL_CLASSES_KEY), if it takes a label.

    The service refuses a label graph without it: on CUDA an index past the table is not an error, so the manifest's
    class names are checked against the table itself at load. Returns the count (None: no label input).
    """
    model = onnx.load(str(path))
    if not any(i.name == "label" for i in model.graph.input):
        return None
    classes = label_classes(model)
    if classes is None:
        raise ExportError(f"{path.name}: takes 'label' but no Gather on an initializer reads it; cannot count classes")
    del model.metadata_props[:]
    model.metadata_props.add(key=LABEL_CLASSES_KEY, value=str(classes))
    onnx.save(model, str(path))
    return classes


def export_graph(model: AutoEncoder, role: str, likelihood: str, path: Path) -> tuple[GraphFile, float]:
    """Export one graph to a single self-contained .onnx file and verify it; return its manifest entry."""
    module, names = _graph(model, role, likelihood)
    example = _example_inputs(model, role, 2, torch.Generator().manual_seed(0))
    batch = torch.export.Dim("N", min=1)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" lines are noise here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (),
            str(path),
            kwargs=example,
            input_names=list(example),
            output_names=names,
            dynamic_shapes={k: {0: batch} for k in example},
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    strip_debug_metadata(path)
    stamp_label_classes(path)
    worst = _check_parity(module, path, model, role, names)
    inputs, outputs = describe_graph(path)
    return GraphFile(path=path.name, sha256=sha256_file(path), inputs=inputs, outputs=outputs), worst


def export_model(model: AutoEncoder, likelihood: str, out_dir: Path) -> tuple[dict[str, GraphFile], float]:
    """encoder.onnx and decoder.onnx into out_dir; returns their manifest entries and the worst parity error."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval()
    entries, worst = {}, 0.0
    for role in ("encoder", "decoder"):
        entries[role], err = export_graph(model, role, likelihood, out_dir / f"{role}.onnx")
        worst = max(worst, err)
    return entries, worst

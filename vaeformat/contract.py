"""The ONNX graph contract, checked against what a manifest declares (before any session exists).

Encoder: `image` float32 [N, C, H, W] (+ `label` int64 [N] when `encoder_conditioned`) -> `mu` float32 [N, D]
(+ `logvar` float32 [N, D] unless kind is `ae`). Decoder: `z` float32 [N, D] (+ `label` int64 [N] when the
manifest has `labels`) -> `image` float32 [N, C, H, W] (+ optional `logits`, same shape).
A graph that takes `label` says how many classes its label table has in its metadata (LABEL_CLASSES_KEY): the
service cannot trust the runtime to refuse an index past the table (on CUDA a Gather out of range reads whatever
memory follows), so it checks the manifest's class names against that count at load.
"""

from __future__ import annotations

from pathlib import Path

from .errors import ManifestError
from .files import MANIFEST_FILE
from .manifest import GraphFile, Manifest, TensorSpec

# ONNX model metadata (metadata_props) written by the export: rows of the graph's label table (its Gather's data).
LABEL_CLASSES_KEY = "vae.label_classes"

Dims = list[int | None]  # None: the dynamic batch axis
Tensors = dict[str, tuple[str, Dims]]  # name -> (dtype, dims)


def _expected(manifest: Manifest) -> dict[str, tuple[Tensors, Tensors, set[str]]]:
    """Per role: required inputs, required outputs, optional output names."""
    c, h, w = manifest.image.channels, manifest.image.height, manifest.image.width
    d = manifest.latent_dim
    label: Tensors = {"label": ("int64", [None])}
    enc_in = {"image": ("float32", [None, c, h, w]), **(label if manifest.encoder_conditioned else {})}
    enc_out = {"mu": ("float32", [None, d]), **({"logvar": ("float32", [None, d])} if manifest.stochastic else {})}
    dec_in = {"z": ("float32", [None, d]), **(label if manifest.conditional else {})}
    dec_out = {"image": ("float32", [None, c, h, w])}
    return {
        "encoder": (enc_in, enc_out, set()),
        "decoder": (dec_in, dec_out, {"logits"}),
    }


def _check_tensor(where: str, spec: TensorSpec, dtype: str, dims: Dims) -> None:
    if spec.dtype != dtype:
        raise ManifestError(f"{where}.dtype' is {spec.dtype}, the contract needs {dtype}")
    if len(spec.shape) != len(dims):
        raise ManifestError(f"{where}.shape' is {spec.shape}, the contract needs rank {len(dims)} ({_show(dims)})")
    for axis, (got, want) in enumerate(zip(spec.shape, dims, strict=True)):
        if want is None and not isinstance(got, str):
            raise ManifestError(f"{where}.shape[{axis}]' is {got}; the batch axis must be dynamic (a name like 'N')")
        # A named (dynamic) non-batch axis cannot be checked here; the warm-up run checks the real shapes.
        if want is not None and isinstance(got, int) and got != want:
            raise ManifestError(f"{where}.shape[{axis}]' is {got!r}, the manifest's image/latent_dim need {want}")


def _show(dims: Dims) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in dims) + "]"


def _check_list(path: Path, field: str, declared: list[TensorSpec], required: Tensors, optional: set[str]) -> None:
    names = [t.name for t in declared]
    missing = [n for n in required if n not in names]
    unknown = [n for n in names if n not in required and n not in optional]
    if missing or unknown or len(set(names)) != len(names):
        raise ManifestError(
            f"{path}: field '{field}' declares {names}; the contract for this manifest needs {list(required)}"
            + (f" (optional: {sorted(optional)})" if optional else "")
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {unknown}" if unknown else "")
        )
    for i, t in enumerate(declared):
        if t.name in required:
            _check_tensor(f"{path}: field '{field}[{i}]", t, *required[t.name])


def check_contract(folder: Path, manifest: Manifest) -> None:
    """Raise ManifestError, naming the field, when the declared graph I/O breaks the contract."""
    path = Path(folder) / MANIFEST_FILE
    for role, (inputs, outputs, optional) in _expected(manifest).items():
        graph: GraphFile = getattr(manifest.files, role)
        _check_list(path, f"files.{role}.inputs", graph.inputs, inputs, set())
        _check_list(path, f"files.{role}.outputs", graph.outputs, outputs, optional)
        logits = graph.output("logits")
        if logits is not None:
            _check_tensor(f"{path}: field 'files.{role}.outputs[logits]", logits, *outputs["image"])

"""Open one onnxruntime session per graph file and check its real inputs and outputs against the manifest."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

from vaeformat.contract import LABEL_CLASSES_KEY
from vaeformat.errors import ManifestError
from vaeformat.manifest import GraphFile, TensorSpec

from .runtime import provider_options, session_options
from .settings import Settings

# onnxruntime reports element types as strings such as "tensor(float)".
_ORT_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def open_session(path: Path, providers: Sequence[str], settings: Settings) -> ort.InferenceSession:
    """A session on `path` with the given providers and the settings' runtime options (service/runtime.py).

    A file onnxruntime cannot load is a ManifestError.
    """
    try:
        return ort.InferenceSession(
            str(path),
            sess_options=session_options(settings),
            providers=provider_options(providers, settings, graph_bytes=path.stat().st_size),
        )
    except Exception as e:  # onnxruntime raises its own exception types for corrupt or unsupported graphs
        raise ManifestError(f"{path}: onnxruntime cannot load this graph ({type(e).__name__}: {e})") from None


def _dims_agree(declared: int | str, actual: int | str | None) -> bool:
    if isinstance(declared, str):  # declared dynamic: the graph must not fix this axis
        return not isinstance(actual, int)
    return actual == declared or not isinstance(actual, int)  # a dynamic graph axis accepts the declared size


def _compare(path: Path, field: str, declared: list[TensorSpec], actual: list[ort.NodeArg]) -> None:
    real = {a.name: a for a in actual}
    if sorted(real) != sorted(t.name for t in declared):
        raise ManifestError(
            f"{path}: the graph's {field.rsplit('.', 1)[1]} are {sorted(real)}, "
            f"but manifest field '{field}' declares {sorted(t.name for t in declared)}"
        )
    for i, spec in enumerate(declared):
        arg = real[spec.name]
        dtype = _ORT_DTYPES.get(arg.type, arg.type)
        if dtype != spec.dtype:
            raise ManifestError(
                f"{path}: '{spec.name}' is {dtype} in the graph, "
                f"but manifest field '{field}[{i}].dtype' says {spec.dtype}"
            )
        shape = list(arg.shape)
        same_rank = len(shape) == len(spec.shape)
        if not same_rank or not all(_dims_agree(d, a) for d, a in zip(spec.shape, shape, strict=True)):
            raise ManifestError(
                f"{path}: '{spec.name}' has shape {shape} in the graph, "
                f"but manifest field '{field}[{i}].shape' says {spec.shape}"
            )


def check_io(session: ort.InferenceSession, graph: GraphFile, role: str, path: Path, classes: int = 0) -> None:
    """Raise ManifestError naming the file and field when the session's I/O differs from the declaration.

    A graph that takes `label` must say in its metadata how many classes its label table holds, at least
    `classes` (the manifest's class names).
    """
    _compare(path, f"files.{role}.inputs", graph.inputs, session.get_inputs())
    _compare(path, f"files.{role}.outputs", graph.outputs, session.get_outputs())
    if graph.input("label") is not None:
        _check_label_classes(session, path, classes)


def _check_label_classes(session: ort.InferenceSession, path: Path, classes: int) -> None:
    value = session.get_modelmeta().custom_metadata_map.get(LABEL_CLASSES_KEY)
    if value is None or not value.isdigit():
        raise ManifestError(
            f"{path}: the graph takes 'label' but its metadata has no class count ('{LABEL_CLASSES_KEY}'); "
            "re-export the model, or write it with `python -m training stamp MODEL_FOLDER`"
        )
    if int(value) < classes:
        raise ManifestError(
            f"{path}: the graph's label table has {value} classes, but manifest field 'labels' names {classes}; "
            "a label past the table would read memory outside it: list only the classes the model was trained on"
        )

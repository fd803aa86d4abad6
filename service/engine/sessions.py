"""onnxruntime sessions: their options from the engine's settings, opening one per graph file, and checking its
real inputs and outputs against what the manifest declares.

One place decides how every session is built, so the service, the warm-up and the benchmark's raw-runtime
baseline (bench/raw.py) run the graphs the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from vaeformat.contract import LABEL_CLASSES_KEY
from vaeformat.errors import ManifestError
from vaeformat.manifest import GraphFile, TensorSpec

from ..settings import EngineSettings
from .providers import CUDA, TENSORRT

_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_ARENA = {"next_power_of_two": "kNextPowerOfTwo", "same_as_requested": "kSameAsRequested"}
_CUDNN = {"exhaustive": "EXHAUSTIVE", "heuristic": "HEURISTIC", "default": "DEFAULT"}


def session_options(settings: EngineSettings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = _LEVELS[settings.graph_optimization]
    # Threads per session follow from cores / processes: with every process owning a pool of one thread per core,
    # VAE_PROCESSES=2 on 2 cores ran 4 threads per graph call and gained little over one process.
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.enable_cpu_mem_arena = settings.cpu_memory_arena
    # Spinning keeps intra-op threads hot between a graph's parallel sections (large batches gain most), but the
    # spinning threads take the cores the event loop needs under load: off unless VAE_THREAD_SPINNING=true.
    spin = "1" if settings.thread_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    if settings.thread_spinning:  # spin between a run's parallel sections, never between runs
        options.add_session_config_entry("session.force_spinning_stop", "1")
    options.log_severity_level = 3
    return options


# The derived CUDA arena ceiling (VAE_CUDA_MEMORY_LIMIT_MB=auto): weights, activations of the largest warmed
# batch and cuDNN's workspace, with room to spare. A ceiling, not a budget: the arena grows only as far as the
# largest warmed batch needs (arena strategy same_as_requested), and this stops a leak or a runaway there.
AUTO_LIMIT_BASE_BYTES = 256 * 1024 * 1024
AUTO_LIMIT_PER_GRAPH_BYTE = 16


def cuda_memory_limit(settings: EngineSettings, graph_bytes: int) -> int | None:
    """Bytes the CUDA arena of a session on a graph of `graph_bytes` may hold; None for no ceiling."""
    if settings.cuda_memory_limit_mb == "auto":
        return AUTO_LIMIT_BASE_BYTES + AUTO_LIMIT_PER_GRAPH_BYTE * graph_bytes
    return settings.cuda_memory_limit_mb * 1024 * 1024 or None


def cuda_options(settings: EngineSettings, graph_bytes: int = 0) -> dict[str, Any]:
    options: dict[str, Any] = {
        "device_id": settings.cuda_device,
        "arena_extend_strategy": _ARENA[settings.cuda_arena_strategy],
        "cudnn_conv_algo_search": _CUDNN[settings.cudnn_search],
        "do_copy_in_default_stream": True,
        # TF32 makes a row's result depend on its batch-mates; off, the same seed gives the same bytes.
        "use_tf32": int(settings.cuda_tf32),
    }
    limit = cuda_memory_limit(settings, graph_bytes)
    if limit is not None:
        options["gpu_mem_limit"] = limit
    return options


def tensorrt_options(settings: EngineSettings, graph_bytes: int = 0) -> dict[str, Any]:
    options: dict[str, Any] = {"device_id": settings.cuda_device, "trt_fp16_enable": settings.tensorrt_fp16}
    if settings.tensorrt_cache_dir is not None:
        options |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(settings.tensorrt_cache_dir)}
    return options


def provider_options(
    providers: Sequence[str], settings: EngineSettings, graph_bytes: int = 0
) -> list[tuple[str, dict[str, Any]]]:
    """`providers` (names, best first) with their options, in the form InferenceSession takes.

    `graph_bytes` (the graph file's size) sizes the derived CUDA arena ceiling.
    """
    by_name = {CUDA: cuda_options, TENSORRT: tensorrt_options}
    return [(name, by_name[name](settings, graph_bytes) if name in by_name else {}) for name in providers]


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


def open_session(path: Path, providers: Sequence[str], settings: EngineSettings) -> ort.InferenceSession:
    """A session on `path` with the given providers and the settings' runtime options .

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

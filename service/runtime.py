"""onnxruntime session and execution-provider options, from the service settings.

One place decides how every session is built, so the service, the warm-up and the benchmark's raw-runtime
baseline (bench/raw.py) run the graphs the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import onnxruntime as ort

from .settings import Settings

CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"

_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_ARENA = {"next_power_of_two": "kNextPowerOfTwo", "same_as_requested": "kSameAsRequested"}
_CUDNN = {"exhaustive": "EXHAUSTIVE", "heuristic": "HEURISTIC", "default": "DEFAULT"}


def session_options(settings: Settings) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = _LEVELS[settings.graph_optimization]
    # Threads per session follow from cores / processes: with every process owning a pool of one thread per core,
    # VAE_PROCESSES=2 on 2 cores ran 4 threads per graph call and gained little over one process.
    options.intra_op_num_threads = settings.session_threads()
    options.inter_op_num_threads = settings.inter_op_threads
    options.enable_cpu_mem_arena = settings.cpu_memory_arena
    # Spinning keeps intra-op threads hot between a graph's parallel sections (large batches gain most), but the
    # spinning threads take the cores the event loop needs under load: off unless VAE_THREAD_SPINNING=true.
    spin = "1" if settings.thread_spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    options.log_severity_level = 3
    return options


# The derived CUDA arena ceiling (VAE_CUDA_MEMORY_LIMIT_MB=auto): weights, activations of the largest warmed
# batch and cuDNN's workspace, with room to spare. A ceiling, not a budget: the arena grows only as far as the
# largest warmed batch needs (arena strategy same_as_requested), and this stops a leak or a runaway there.
AUTO_LIMIT_BASE_BYTES = 256 * 1024 * 1024
AUTO_LIMIT_PER_GRAPH_BYTE = 16


def cuda_memory_limit(settings: Settings, graph_bytes: int) -> int | None:
    """Bytes the CUDA arena of a session on a graph of `graph_bytes` may hold; None for no ceiling."""
    if settings.cuda_memory_limit_mb == "auto":
        return AUTO_LIMIT_BASE_BYTES + AUTO_LIMIT_PER_GRAPH_BYTE * graph_bytes
    return settings.cuda_memory_limit_mb * 1024 * 1024 or None


def cuda_options(settings: Settings, graph_bytes: int = 0) -> dict[str, Any]:
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


def tensorrt_options(settings: Settings, graph_bytes: int = 0) -> dict[str, Any]:
    options: dict[str, Any] = {"device_id": settings.cuda_device, "trt_fp16_enable": settings.tensorrt_fp16}
    if settings.tensorrt_cache_dir is not None:
        options |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(settings.tensorrt_cache_dir)}
    return options


def provider_options(
    providers: Sequence[str], settings: Settings, graph_bytes: int = 0
) -> list[tuple[str, dict[str, Any]]]:
    """`providers` (names, best first) with their options, in the form InferenceSession takes.

    `graph_bytes` (the graph file's size) sizes the derived CUDA arena ceiling.
    """
    by_name = {CUDA: cuda_options, TENSORRT: tensorrt_options}
    return [(name, by_name[name](settings, graph_bytes) if name in by_name else {}) for name in providers]

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
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.enable_cpu_mem_arena = settings.cpu_memory_arena
    # Spinning keeps intra-op threads hot between a graph's parallel sections (large batches gain most); it
    # can be turned off where the cores are shared with other busy processes.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.thread_spinning else "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "1" if settings.thread_spinning else "0")
    options.log_severity_level = 3
    return options


def cuda_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "device_id": settings.cuda_device,
        "arena_extend_strategy": _ARENA[settings.cuda_arena_strategy],
        "cudnn_conv_algo_search": _CUDNN[settings.cudnn_search],
        "do_copy_in_default_stream": True,
    }
    if settings.cuda_memory_limit_mb:
        options["gpu_mem_limit"] = settings.cuda_memory_limit_mb * 1024 * 1024
    return options


def tensorrt_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = {"device_id": settings.cuda_device, "trt_fp16_enable": settings.tensorrt_fp16}
    if settings.tensorrt_cache_dir is not None:
        options |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(settings.tensorrt_cache_dir)}
    return options


def provider_options(providers: Sequence[str], settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """`providers` (names, best first) with their options, in the form InferenceSession takes."""
    by_name = {CUDA: cuda_options, TENSORRT: tensorrt_options}
    return [(name, by_name[name](settings) if name in by_name else {}) for name in providers]

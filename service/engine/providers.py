"""Choose onnxruntime execution providers, and find out which ones a session really runs on.

onnxruntime-gpu lists CUDA and TensorRT as available on any machine, and when their libraries or the GPU are
missing it logs an error and silently runs the session on the CPU. So the truth is `session.get_providers()`,
asked after the session exists; `probe` does that once on a one-node graph at start-up, and `check` applies
the operator's rules (an explicit `cuda`/`tensorrt`, or `require_gpu`) to what each real session reports.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import onnxruntime as ort

from ..errors import StartupError
from ..settings import ProviderMode

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)

_WANTED: dict[str, list[str]] = {
    "auto": [CUDA, CPU],
    "cpu": [CPU],
    "cuda": [CUDA, CPU],
    "tensorrt": [TENSORRT, CUDA, CPU],
}

_ORT_DEFAULT_SEVERITY = 2  # warning


class ProviderError(StartupError):
    """The execution providers in use break a start-up rule (an explicit GPU provider, or require_gpu)."""


@dataclass(frozen=True)
class ProviderPlan:
    """What was asked for, and what a probe session really ran on."""

    mode: ProviderMode
    requested: tuple[str, ...]
    active: tuple[str, ...]

    @property
    def gpu(self) -> bool:
        return any(p in GPU_PROVIDERS for p in self.active)

    @property
    def fell_back(self) -> bool:
        return self.requested[0] not in self.active


def requested_providers(mode: ProviderMode) -> list[str]:
    """Providers to ask onnxruntime for, best first, limited to those this onnxruntime build has."""
    built = set(ort.get_available_providers())
    return [p for p in _WANTED[mode] if p in built] or [CPU]


# `Identity(x: float[N]) -> y`, opset 13, IR 7: the serialised bytes of a graph made with onnx.helper, kept
# here because onnxruntime cannot build graphs and the service does not import onnx.
_PROBE_MODEL = bytes.fromhex(
    "0807120570726f62653a470a1a0a01781201791a084964656e7469747922084964656e74697479120570726f"
    "62655a100a0178120b0a09080112050a0312014e62100a0179120b0a09080112050a0312014e42040a00100d"
)


def probe(mode: ProviderMode) -> ProviderPlan:
    """Create a tiny session with the requested providers and report what it really runs on."""
    requested = requested_providers(mode)
    quiet = mode == "auto"  # in auto a missing GPU is expected; with an explicit GPU mode keep ORT's reason
    if quiet:
        ort.set_default_logger_severity(4)
    try:
        session = ort.InferenceSession(_PROBE_MODEL, providers=requested)
        active = session.get_providers()
    except Exception as e:  # some builds raise instead of falling back
        log.warning("onnxruntime could not create a session on %s (%s); using the CPU", requested, e)
        active = [CPU]
    finally:
        if quiet:
            ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)
    plan = ProviderPlan(mode=mode, requested=tuple(requested), active=tuple(active))
    if plan.fell_back and plan.requested[0] != CPU:
        log.info(
            "providers=%s: %s is not usable here (no GPU, or CUDA/cuDNN libraries missing); sessions run on %s%s",
            mode,
            plan.requested[0],
            ", ".join(active),
            " (set VAE_PROVIDERS=cuda to see onnxruntime's reason)" if quiet else "",
        )
    return plan


def check(mode: ProviderMode, active: list[str] | tuple[str, ...], *, require_gpu: bool, what: str) -> None:
    """Raise ProviderError when `active` (a session's real providers) breaks the operator's rules."""
    wanted = _WANTED[mode][0]
    if mode in ("cuda", "tensorrt") and wanted not in active:
        raise ProviderError(
            f"{what}: VAE_PROVIDERS={mode} asks for {wanted}, but the session runs on {', '.join(active)}; "
            "install the CUDA/cuDNN (and TensorRT) libraries onnxruntime-gpu needs, or use VAE_PROVIDERS=auto"
        )
    if require_gpu and not any(p in GPU_PROVIDERS for p in active):
        raise ProviderError(
            f"{what}: VAE_REQUIRE_GPU=true, but the session runs on {', '.join(active)} only; no GPU provider is "
            "usable on this machine (check the GPU, the driver and the CUDA libraries, or unset VAE_REQUIRE_GPU)"
        )

"""GPU memory in use, read from NVML (the NVIDIA driver's management library) through ctypes.

Device-level figures, as Triton's `nv_gpu_memory_used_bytes` reports them: per-process figures would need the
host's process ids, which a container does not see. No Python package is needed: libnvidia-ml.so.1 comes with the
driver (the NVIDIA Container Toolkit mounts it), and where it is missing (no GPU) nothing is reported.
"""

from __future__ import annotations

import ctypes
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

_LIBRARY = "libnvidia-ml.so.1"


class _Memory(ctypes.Structure):
    # nvmlMemory_t (version 1), stable since the first NVML
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]


@dataclass(frozen=True)
class DeviceMemory:
    device: int
    used_bytes: int
    total_bytes: int


class GpuMemory:
    """Reads a GPU's memory figures; `read` is None where NVML or the device is not there."""

    def __init__(self, device: int, library: str = _LIBRARY) -> None:
        self.device = device
        self._nvml: ctypes.CDLL | None = None
        try:
            nvml = ctypes.CDLL(library)
            if nvml.nvmlInit_v2() != 0:
                return
        except (OSError, AttributeError):  # no driver library here: a CPU machine
            return
        self._nvml = nvml

    @property
    def available(self) -> bool:
        return self._nvml is not None

    def read(self) -> DeviceMemory | None:
        """The device's used and total memory now, or None."""
        if self._nvml is None:
            return None
        handle = ctypes.c_void_p()
        memory = _Memory()
        if self._nvml.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(self.device), ctypes.byref(handle)) != 0:
            return None
        if self._nvml.nvmlDeviceGetMemoryInfo(handle, ctypes.byref(memory)) != 0:
            return None
        return DeviceMemory(self.device, int(memory.used), int(memory.total))

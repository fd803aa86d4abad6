"""GPU memory figures from NVML: real on a machine with the NVIDIA driver, absent (not an error) elsewhere."""

from __future__ import annotations

import ctypes.util

import pytest

from service.engine.gpu_memory import GpuMemory
from service.metrics import GpuMemoryCollector, Metrics

HAS_NVML = ctypes.util.find_library("nvidia-ml") is not None or GpuMemory(0).available


def test_without_the_driver_library_nothing_is_reported():
    gpu = GpuMemory(0, library="libnvidia-ml-that-is-not-here.so.1")
    assert not gpu.available and gpu.read() is None
    assert list(GpuMemoryCollector(gpu).collect()) == []
    metrics = Metrics()
    assert metrics.watch_gpu(gpu) is None
    assert b"vae_gpu_memory" not in metrics.render()


@pytest.mark.skipif(not HAS_NVML, reason="no NVIDIA driver (libnvidia-ml.so.1) on this machine")
def test_with_the_driver_the_device_memory_is_read_and_exported():
    gpu = GpuMemory(0)
    figures = gpu.read()
    assert figures is not None and 0 < figures.used_bytes <= figures.total_bytes
    metrics = Metrics()
    assert metrics.watch_gpu(gpu) is gpu
    text = metrics.render().decode()
    assert 'vae_gpu_memory_used_bytes{device="0"}' in text and 'vae_gpu_memory_total_bytes{device="0"}' in text

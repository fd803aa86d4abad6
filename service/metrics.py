"""Prometheus metrics, in a registry owned by one app (so tests can build many apps in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .gpu_memory import GpuMemory, GpuMemoryCollector

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class Metrics:
    """Every metric the service exports; `render()` is the body of GET /metrics."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "vae_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "vae_request_duration_seconds", "HTTP request latency by route template", ["route", "method"], registry=r
        )
        self.inference_seconds = Histogram(
            "vae_inference_seconds",
            "onnxruntime run time per call, by model and graph",
            ["model", "graph"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.batch_size = Histogram(
            "vae_inference_batch_size",
            "rows per onnxruntime call, by model and graph",
            ["model", "graph"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.images_produced = Counter("vae_images_produced", "images decoded by a model", ["model"], registry=r)
        self.model_info = Gauge(
            "vae_model_info",
            "1 for each loaded model graph, with the execution provider it really runs on",
            ["model", "kind", "version", "graph", "provider"],
            registry=r,
        )

    def watch_gpu(self, gpu: GpuMemory) -> GpuMemory | None:
        """Export the GPU's memory figures at every scrape; the reader, or None where NVML is not there."""
        if not gpu.available:
            return None
        self.registry.register(GpuMemoryCollector(gpu))
        return gpu

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""Prometheus metrics, in a registry owned by one app (so tests can build many apps in one process).

HTTP requests are counted on the event loop, once per request, by `RequestStats`: plain counters read at scrape time
(a prometheus_client counter and histogram take a lock and walk their buckets on every request, several times the
cost of the counting itself). Everything else, counted once per batch or per model, uses prometheus_client's own.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from .graph_stats import GraphStatsCollector
from .processes import ProcessGroup


class DeviceMemory(Protocol):
    @property
    def device(self) -> int: ...

    @property
    def used_bytes(self) -> int: ...

    @property
    def total_bytes(self) -> int: ...


class MemoryReader(Protocol):
    """What reads a GPU's memory (service/engine/gpu_memory.py): whether it can, and the figures now."""

    @property
    def available(self) -> bool: ...

    def read(self) -> DeviceMemory | None: ...


R = TypeVar("R", bound=MemoryReader)

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class Metrics:
    """Every metric the service exports; `render()` is the body of GET /metrics."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.shared: ProcessGroup | None = None
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = RequestStats()
        r.register(self.requests)
        self.graphs = GraphStatsCollector()  # queue time, stages, queue depth, requests in flight
        r.register(self.graphs)
        self.inference_seconds = Histogram(
            "vae_inference_seconds",
            "onnxruntime run time per call, by model, version and graph",
            ["model", "version", "graph"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.batch_size = Histogram(
            "vae_inference_batch_size",
            "rows per onnxruntime call, by model, version and graph",
            ["model", "version", "graph"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.images_produced = Counter(
            "vae_images_produced", "images decoded by a model, by model and version", ["model", "version"], registry=r
        )
        self.model_info = Gauge(
            "vae_model_info",
            "1 for each loaded model graph, with the execution provider it really runs on",
            ["model", "kind", "version", "graph", "provider"],
            registry=r,
        )

    def watch_gpu(self, gpu: R) -> R | None:
        """Export the GPU's memory figures at every scrape; the reader, or None where NVML is not there."""
        if not gpu.available:
            return None
        self.registry.register(GpuMemoryCollector(gpu))
        return gpu

    def share(self, shared: ProcessGroup) -> None:
        """From now on, /metrics shows every process's metrics merged (service/processes.py)."""
        self.shared = shared

    def render(self) -> bytes:
        if self.shared is not None:
            return self.shared.render(self.registry)
        return generate_latest(self.registry)


class GpuMemoryCollector(Collector):
    """`vae_gpu_memory_used_bytes{device}` and `vae_gpu_memory_total_bytes{device}`, read at each scrape."""

    def __init__(self, gpu: MemoryReader) -> None:
        self.gpu = gpu

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = self.gpu.read()
        if figures is None:
            return
        labels = [str(figures.device)]
        used = GaugeMetricFamily("vae_gpu_memory_used_bytes", "GPU memory in use on the device", labels=["device"])
        used.add_metric(labels, figures.used_bytes)
        total = GaugeMetricFamily("vae_gpu_memory_total_bytes", "GPU memory on the device", labels=["device"])
        total.add_metric(labels, figures.total_bytes)
        yield used
        yield total


class RequestStats(Collector):
    """`vae_requests_total{route,method,status}` and `vae_request_duration_seconds{route,method}` (a histogram).

    `record` is called on the event loop only, as is a scrape (/metrics), so the counts need no lock.
    """

    BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)  # prometheus's

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = {}
        self.latency: dict[tuple[str, str], list[float]] = {}  # per bucket (the last is +Inf), then the sum

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        self.counts[key] = self.counts.get(key, 0) + 1
        latency = self.latency.get((route, method))
        if latency is None:
            latency = self.latency[(route, method)] = [0.0] * (len(self.BUCKETS) + 2)
        latency[bisect_left(self.BUCKETS, seconds)] += 1
        latency[-1] += seconds

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        requests = CounterMetricFamily(
            "vae_requests", "HTTP requests by route template, method and status", labels=["route", "method", "status"]
        )
        for (route, method, status), count in sorted(self.counts.items()):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        duration = HistogramMetricFamily(
            "vae_request_duration_seconds", "HTTP request latency by route template", labels=["route", "method"]
        )
        for (route, method), latency in sorted(self.latency.items()):
            cumulative, buckets = 0.0, []
            for bound, observed in zip((*map(str, self.BUCKETS), "+Inf"), latency[:-1], strict=True):
                cumulative += observed
                buckets.append((bound, cumulative))
            duration.add_metric([route, method], buckets, latency[-1])
        yield duration

"""What each graph's requests spent where: queue, decode, compute, render; the figures behind Prometheus's
queue-time histogram and stage counters, and behind the OIP statistics extension (Triton's shape).

The worker thread that runs a batch records it once (`GraphStats.record_batch`), under a lock, with plain numbers:
no per-request Prometheus call. Scrapes and `/v2/models/{name}/stats` read a copy.
"""

from __future__ import annotations

import threading
import time
import weakref
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

QUEUE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
STAGES = ("decode", "compute", "render")  # a batch's stages besides the queue: feeds made, graph run, replies made


@dataclass
class BatchSizeStats:
    count: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


@dataclass
class GraphStats:
    """One graph's counts and times since the service started (of one version of its model)."""

    model: str
    version: str
    graph: str
    succeeded: int = 0
    failed: int = 0
    request_seconds: float = 0.0  # queue + the batch's stages, summed over requests
    executions: int = 0  # batches (graph calls)
    last_inference_ms: int = 0  # milliseconds since the epoch
    queue_seconds: float = 0.0
    queue_buckets: list[int] = field(default_factory=lambda: [0] * (len(QUEUE_BUCKETS) + 1))
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    batches: dict[int, BatchSizeStats] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record_batch(self, waits: Sequence[float], failed: int, decode: float, compute: float, render: float) -> None:
        """A batch of len(waits) requests (`failed` of them failed), each having waited waits[i] seconds."""
        stages = {"decode": decode, "compute": compute, "render": render}
        spent = decode + compute + render
        with self.lock:
            self.executions += 1
            self.last_inference_ms = int(time.time() * 1000)
            self.failed += failed
            self.succeeded += len(waits) - failed
            for wait in waits:
                self.queue_buckets[bisect_left(QUEUE_BUCKETS, wait)] += 1
            total_wait = sum(waits)
            self.queue_seconds += total_wait
            self.request_seconds += total_wait + spent * len(waits)
            size = self.batches.get(len(waits))
            if size is None:
                size = self.batches[len(waits)] = BatchSizeStats()
            size.count += 1
            for stage, seconds in stages.items():
                self.stage_seconds[stage] += seconds
                size.seconds[stage] += seconds

    def snapshot(self) -> GraphStats:
        with self.lock:
            return GraphStats(
                self.model,
                self.version,
                self.graph,
                self.succeeded,
                self.failed,
                self.request_seconds,
                self.executions,
                self.last_inference_ms,
                self.queue_seconds,
                list(self.queue_buckets),
                dict(self.stage_seconds),
                {n: BatchSizeStats(b.count, dict(b.seconds)) for n, b in self.batches.items()},
            )

    def triton(self, name: str) -> dict[str, object]:
        """This graph's statistics as Triton's `model_stats` entry (its statistics extension), times in ns."""
        s = self.snapshot()
        requests = s.succeeded + s.failed
        return {
            "name": name,
            "version": s.version,
            "last_inference": s.last_inference_ms,
            "inference_count": s.succeeded,
            "execution_count": s.executions,
            "inference_stats": {
                "success": {"count": s.succeeded, "ns": _ns(s.request_seconds)},
                "fail": {"count": s.failed, "ns": 0},
                "queue": {"count": requests, "ns": _ns(s.queue_seconds)},
                "compute_input": {"count": requests, "ns": _ns(s.stage_seconds["decode"])},
                "compute_infer": {"count": requests, "ns": _ns(s.stage_seconds["compute"])},
                "compute_output": {"count": requests, "ns": _ns(s.stage_seconds["render"])},
                "cache_hit": {"count": 0, "ns": 0},
                "cache_miss": {"count": 0, "ns": 0},
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": {"count": b.count, "ns": _ns(b.seconds["decode"])},
                    "compute_infer": {"count": b.count, "ns": _ns(b.seconds["compute"])},
                    "compute_output": {"count": b.count, "ns": _ns(b.seconds["render"])},
                }
                for size, b in sorted(s.batches.items())
            ],
        }


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class GraphStatsCollector(Collector):
    """Every graph's `GraphStats` for Prometheus, and what is waiting and in flight now."""

    def __init__(self) -> None:
        self.graphs: dict[tuple[str, str, str], GraphStats] = {}
        # (model, version, graph) -> its runner, whose `waiting` is read at each scrape; weak: an unloaded model's
        # goes. Each version counts apart, so that a roll-out can compare the new one with the old.
        self.runners: weakref.WeakValueDictionary[tuple[str, str, str], Any] = weakref.WeakValueDictionary()
        self.in_flight = 0  # HTTP requests being answered (the edge counts them, on the event loop)

    def graph(self, model: str, version: str, graph: str) -> GraphStats:
        """The stats of a graph of one version of a model, kept across reloads of that version (the counts are the
        service's, like Triton's)."""
        key = (model, version, graph)
        found = self.graphs.get(key)
        if found is None:
            found = self.graphs[key] = GraphStats(model, version, graph)
        return found

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]:
        queue = HistogramMetricFamily(
            "vae_queue_seconds",
            "time a request waited for its batch, by model, version and graph",
            labels=["model", "version", "graph"],
        )
        stages = CounterMetricFamily(
            "vae_stage_seconds",
            "time spent per stage (queue: summed over requests; decode, compute, render: per batch)",
            labels=["model", "version", "graph", "stage"],
        )
        outcomes = CounterMetricFamily(
            "vae_graph_requests", "requests run on a graph, by outcome", labels=["model", "version", "graph", "outcome"]
        )
        for (model, version, graph), live in sorted(self.graphs.items()):
            s = live.snapshot()
            cumulative, buckets = 0, []
            for bound, observed in zip((*map(str, QUEUE_BUCKETS), "+Inf"), s.queue_buckets, strict=True):
                cumulative += observed
                buckets.append((bound, float(cumulative)))
            queue.add_metric([model, version, graph], buckets, s.queue_seconds)
            stages.add_metric([model, version, graph, "queue"], s.queue_seconds)
            for stage in STAGES:
                stages.add_metric([model, version, graph, stage], s.stage_seconds[stage])
            outcomes.add_metric([model, version, graph, "success"], s.succeeded)
            outcomes.add_metric([model, version, graph, "fail"], s.failed)
        yield queue
        yield stages
        yield outcomes
        depth = GaugeMetricFamily(
            "vae_queue_depth", "requests waiting for a batch now", labels=["model", "version", "graph"]
        )
        for key, runner in sorted(self.runners.items()):
            depth.add_metric(list(key), getattr(runner, "waiting", 0))
        yield depth
        in_flight = GaugeMetricFamily("vae_requests_in_flight", "HTTP requests being answered now")
        in_flight.add_metric([], self.in_flight)
        yield in_flight

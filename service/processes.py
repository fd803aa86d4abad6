"""What one server process shares with the others of its server, through a folder: its metrics, and (for the
first) that it is ready.

Metrics: each process writes its own to the folder, and /metrics, whichever process answers it, merges every
process's.
A load balancer or Prometheus scraping the port reaches one process at random; without this, each scrape would
show that one process's counters. Each process writes its registry (Prometheus text) every `interval` seconds and
whenever it answers /metrics; the merge sums counters, histograms and the like sample by sample, keeps the largest
value of a gauge (every process serves the same models) and the earliest `_created` time. A process that replaces
one that died takes its file: its counters start again from zero, which Prometheus reads as a counter reset.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Metric, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

SUFFIX = ".prom"
READY = "first.ready"


class ProcessGroup:
    """This process's place (`index`) among a server's processes, and the folder they share."""

    def __init__(self, folder: Path, index: int, interval: float = 1.0) -> None:
        self.folder = folder
        self.index = index
        self.interval = interval

    def write(self, registry: CollectorRegistry) -> None:
        """This process's metrics into its file, whole: written aside, then renamed over the last."""
        path = self.folder / f"{self.index}{SUFFIX}"
        aside = path.with_suffix(f".{os.getpid()}.tmp")
        aside.write_bytes(generate_latest(registry))
        aside.replace(path)

    @property
    def first(self) -> bool:
        return self.index == 0

    def mark_ready(self) -> None:
        """The first process has loaded its models (the others wait for this before they take connections)."""
        (self.folder / READY).touch()

    def first_is_ready(self) -> bool:
        return (self.folder / READY).exists()

    def render(self, registry: CollectorRegistry) -> bytes:
        """Every process's metrics merged, this one's as of now."""
        self.write(registry)
        texts = []
        for path in sorted(self.folder.glob(f"*{SUFFIX}")):
            try:
                texts.append(path.read_text())
            except OSError:  # a file being replaced: its process's next write brings it back
                continue
        merged = CollectorRegistry()
        merged.register(_Merged(texts))
        return generate_latest(merged)


class _Merged(Collector):
    def __init__(self, texts: list[str]) -> None:
        self.texts = texts

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for text in self.texts:
            for family in text_string_to_metric_families(text):
                merged = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                samples = values.setdefault(family.name, {})
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    before = samples.get(key)
                    if before is None:
                        samples[key] = sample.value
                    elif sample.name.endswith("_created"):
                        samples[key] = min(before, sample.value)
                    elif merged.type == "gauge":
                        samples[key] = max(before, sample.value)
                    else:
                        samples[key] = before + sample.value
        for name, family in families.items():
            for (sample_name, labels), value in values[name].items():
                family.add_sample(sample_name, dict(labels), value)
            yield family

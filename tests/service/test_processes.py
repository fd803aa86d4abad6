"""processes.py: several processes' metrics merged into one /metrics, whichever process answers it."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from service.metrics import Metrics
from service.processes import ProcessGroup


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_counters_and_histograms_add_up_and_gauges_do_not(tmp_path: Path):
    first, second = Metrics(), Metrics()
    first.share(ProcessGroup(tmp_path, 0))
    second.share(ProcessGroup(tmp_path, 1))
    first.requests.record("/encode", "POST", 200, 0.01)
    second.requests.record("/encode", "POST", 200, 0.02)
    second.requests.record("/encode", "POST", 413, 0.3)
    first.images_produced.labels(model="m", version="1").inc(3)
    second.images_produced.labels(model="m", version="1").inc(4)
    for metrics in (first, second):
        metrics.model_info.labels(model="m", kind="vae", version="1", graph="encoder", provider="CPU").set(1)
    assert second.shared is not None
    second.shared.write(second.registry)  # what its periodic write does
    merged = samples(first.render())  # the first process answers /metrics
    encode = (("method", "POST"), ("route", "/encode"))
    assert merged[("vae_requests_total", (*encode, ("status", "200")))] == 2
    assert merged[("vae_requests_total", (*encode, ("status", "413")))] == 1
    assert merged[("vae_request_duration_seconds_count", encode)] == 3
    assert merged[("vae_images_produced_total", (("model", "m"), ("version", "1")))] == 7
    info = (("graph", "encoder"), ("kind", "vae"), ("model", "m"), ("provider", "CPU"), ("version", "1"))
    assert merged[("vae_model_info", info)] == 1  # every process serves the same model: not 2


def test_a_process_answering_metrics_shows_its_own_counts_as_of_now(tmp_path: Path):
    only = Metrics()
    only.share(ProcessGroup(tmp_path, 0))
    key = ("vae_requests_total", (("method", "GET"), ("route", "/sample"), ("status", "200")))
    only.requests.record("/sample", "GET", 200, 0.01)
    assert samples(only.render())[key] == 1
    only.requests.record("/sample", "GET", 200, 0.01)
    assert samples(only.render())[key] == 2

"""OpenTelemetry: a traced request's span, child of its `traceparent`, with queue, decode, compute and render
children; off, no span at all."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from service import tracing
from service.settings import Settings

from ..asgi import serve
from ..payloads import png

sdk = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402

pytestmark = pytest.mark.anyio
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


@pytest.fixture
def exported() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.use(None)


@pytest.mark.parametrize("batching", [True, False])
async def test_a_traced_request_has_its_stages_as_children_under_the_callers_span(zoo, exported, batching):
    async with serve(Settings(models_dir=zoo, batching=batching)) as client:
        exported.clear()  # warm-up and start-up
        r = await client.post(
            "/encode?model=tiny-vae",
            content=png(),
            headers={"Content-Type": "image/png", "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
        )
        assert r.status_code == 200
    spans = {span.name: span for span in exported.get_finished_spans()}
    request = spans["POST /encode"]
    assert format(request.context.trace_id, "032x") == TRACE_ID
    assert request.parent is not None and format(request.parent.span_id, "016x") == PARENT_ID
    assert request.attributes["http.response.status_code"] == 200
    stages = [spans[name] for name in ("queue", "decode", "compute", "render")]
    for stage in stages:
        assert stage.parent is not None and stage.parent.span_id == request.context.span_id, stage.name
        assert stage.context.trace_id == request.context.trace_id and stage.attributes["graph"] == "encoder"
        assert request.start_time <= stage.start_time <= stage.end_time <= request.end_time, stage.name
    assert [s.end_time for s in stages[:-1]] == [s.start_time for s in stages[1:]]  # one after another


async def test_the_stages_stay_inside_the_request_after_the_wall_clock_is_stepped(zoo, exported, monkeypatch):
    # NTP stepping the wall clock while the server runs moves the monotonic clock against it by the same amount.
    async with serve(Settings(models_dir=zoo, batching=True)) as client:
        monotonic, monotonic_ns = time.monotonic, time.monotonic_ns
        monkeypatch.setattr(time, "monotonic", lambda: monotonic() + 1.0)
        monkeypatch.setattr(time, "monotonic_ns", lambda: monotonic_ns() + 1_000_000_000)
        exported.clear()
        r = await client.post("/encode?model=tiny-vae", content=png(), headers={"Content-Type": "image/png"})
        assert r.status_code == 200
        monkeypatch.undo()
    spans = {span.name: span for span in exported.get_finished_spans()}
    request = spans["POST /encode"]
    for stage in (spans[name] for name in ("queue", "decode", "compute", "render")):
        assert request.start_time <= stage.start_time <= stage.end_time <= request.end_time, stage.name


async def test_off_no_span_is_made(zoo):
    assert tracing.TRACER is None
    exporter = InMemorySpanExporter()
    async with serve(Settings(models_dir=zoo)) as client:
        assert (await client.get("/sample", params={"n": 1})).status_code == 200
    assert exporter.get_finished_spans() == ()


def test_the_environment_turns_tracing_on_only_when_an_exporter_is_named(monkeypatch):
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert not tracing.wanted()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing.wanted()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not tracing.wanted()

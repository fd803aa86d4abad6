"""OpenTelemetry traces, when the standard OTEL_* variables ask for them: a span per request, children for its
queue, decode, compute and render stages, the parent taken from the request's W3C `traceparent`.

Off (no OTEL_* exporter set, or the SDK not installed: `pip install 'vae-service[tracing]'`), `TRACER` is None
and each request pays one comparison. On, spans go out over OTLP (`OTEL_EXPORTER_OTLP_ENDPOINT`, ...) in batches
from a background thread. A batch's stages are timed once on its worker thread; each request of the batch gets its
own child spans with those times, under its own request span.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

log = logging.getLogger(__name__)

TRACER: Any = None  # an opentelemetry Tracer while tracing is on


def wanted() -> bool:
    """Whether the environment asks for traces (OpenTelemetry's own variables)."""
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "")
    if exporter == "none" or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(
        exporter
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure_from_environment() -> bool:
    """Turn tracing on with an OTLP exporter when the environment asks and the SDK is there; whether it is on."""
    if not wanted():
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_* asks for traces, but the OpenTelemetry SDK is not installed: pip install 'vae-service[tracing]'"
        )
        return False
    provider = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "vae-service")})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    use(provider)
    log.info("tracing on: spans exported over OTLP")
    return True


def use(provider: Any) -> None:
    """Trace with this TracerProvider (an in-memory exporter in tests); None turns tracing off."""
    global TRACER
    TRACER = None if provider is None else provider.get_tracer("vae-service")


def start_request(method: str, route: str | None, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[Any, Any]:
    """The request's span, child of its `traceparent` if any, made current; (span, token) for `end_request`."""
    from opentelemetry import context, propagate, trace

    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers if name in _PROPAGATED}
    parent = propagate.extract(carrier)
    span = TRACER.start_span(
        f"{method} {route or path}",
        context=parent,
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": method, "url.path": path, **({"http.route": route} if route else {})},
    )
    return span, context.attach(trace.set_span_in_context(span, parent))


_PROPAGATED = {b"traceparent", b"tracestate"}


def end_request(span: Any, token: Any, status: int) -> None:
    from opentelemetry import context, trace

    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(trace.Status(trace.StatusCode.ERROR))
    span.end()
    context.detach(token)


def current() -> Any:
    """The current request's context, to parent the stage spans recorded later on a worker thread; None when off."""
    if TRACER is None:
        return None
    from opentelemetry import context

    return context.get_current()


def record_stages(parent: Any, graph: str, marks: tuple[float, float, float, float, float]) -> None:
    """Child spans of `parent`: queue, decode, compute, render, between `marks` (time.monotonic() seconds: arrival,
    batch taken, feeds made, graph run, replies made)."""
    tracer = TRACER
    if tracer is None or parent is None:
        return
    # Monotonic seconds -> Unix ns with the offset of now, not of start-up: the wall clock the request's own span
    # reads can be stepped (NTP) while the server runs, and the stages must stay inside that span.
    epoch_ns = time.time_ns() - time.monotonic_ns()
    names = ("queue", "decode", "compute", "render")
    for name, start, end in zip(names, marks, marks[1:], strict=False):
        span = tracer.start_span(
            name, context=parent, start_time=epoch_ns + int(start * 1e9), attributes={"graph": graph}
        )
        span.end(end_time=epoch_ns + int(end * 1e9))

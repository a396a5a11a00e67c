"""OpenTelemetry: one span per stream, its context carried to consumers as ``traceparent``.

The span starts when ``start`` is accepted and ends with the stream; DTMF, marks and errors are
span events (never one span per frame). Its W3C ``traceparent`` goes into the NATS headers of every
frame and event of the stream, so a consumer continues the trace. Export is OTLP/HTTP when an
endpoint is configured. Spans are recorded only when something takes them (an exporter, or a
processor a test passes in); otherwise a stream gets a non-recording span with fresh ids, which is
all ``traceparent`` needs: an SDK span, its attributes and events cost about 2.6 KiB per stream
(tracemalloc over 1000 idle streams) for nothing. The provider is built here and injected, never
installed globally.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.settings import ObservabilitySettings

_PROPAGATOR = TraceContextTextMapPropagator()
_SAMPLED = trace.TraceFlags(trace.TraceFlags.SAMPLED)


def build_tracer_provider(cfg: ObservabilitySettings, extra_processor: SpanProcessor | None = None) -> TracerProvider:
    provider = TracerProvider(
        resource=Resource.create({"service.name": cfg.service_name}),
        sampler=TraceIdRatioBased(cfg.trace_sample_ratio),
    )
    if cfg.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=cfg.otlp_endpoint)))
    if extra_processor is not None:
        provider.add_span_processor(extra_processor)
    return provider


class StreamTracing:
    """Creates and finishes the per-stream spans."""

    def __init__(self, provider: TracerProvider, *, recording: bool = True) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("stream-gateway")
        self._recording = recording
        self._ids = RandomIdGenerator()

    def start_stream(self, attributes: Mapping[str, Any]) -> tuple[Span, str]:
        if self._recording:
            span = self._tracer.start_span("stream", kind=trace.SpanKind.SERVER, attributes=dict(attributes))
        else:
            ids = self._ids
            context = trace.SpanContext(
                ids.generate_trace_id(), ids.generate_span_id(), is_remote=False, trace_flags=_SAMPLED
            )
            span = trace.NonRecordingSpan(context)
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        return span, carrier.get("traceparent", "")

    @staticmethod
    def event(span: Span, name: str, attributes: Mapping[str, Any] | None = None) -> None:
        span.add_event(name, attributes=dict(attributes or {}))

    @staticmethod
    def end(span: Span, *, reason: str, error: str | None = None) -> None:
        span.set_attribute("sgw.stop_reason", reason)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def shutdown(self) -> None:
        self.provider.shutdown()


def extract_traceparent(headers: Mapping[str, str]) -> trace.SpanContext:
    """For consumers and tests: the span context carried in NATS headers."""
    ctx = _PROPAGATOR.extract(dict(headers))
    return trace.get_current_span(ctx).get_span_context()

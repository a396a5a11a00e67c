"""Status callbacks, the internal port, and tracing carried to consumers through NATS headers."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.observability.metrics import METRIC_NAMES
from gateway.observability.tracing import extract_traceparent
from gateway.server import GatewayServer
from gateway.settings import load_settings
from gateway.tools.simulate import SimulateOptions, simulate
from tests.integration.gateway.conftest import GatewayFactory, RunningGateway, parse_metrics

SWML_STATUS = json.loads((Path(__file__).parents[2] / "fixtures" / "swml_stream_status.json").read_text())


def status_url(gw: RunningGateway) -> str:
    return gw.ws_url.replace("ws://", "http://").replace("/stream", "/status")


async def test_swml_and_cxml_status_callbacks_become_status_events(gateway_factory: GatewayFactory) -> None:
    """The shapes, on a gateway explicitly open to unsigned callbacks (authentication:
    test_status_callbacks.py)."""
    gateway = await gateway_factory(status__allow_unauthenticated=True)
    async with aiohttp.ClientSession() as http:
        r = await http.post(status_url(gateway), json=SWML_STATUS)
        assert r.status == 200
        form = {
            "AccountSid": "AC1",
            "CallSid": "CA1",
            "StreamSid": "MZ1",
            "StreamName": "n",
            "StreamEvent": "stream-error",
            "StreamError": "connection_refused",
        }
        r = await http.post(status_url(gateway), data=form)
        assert r.status == 200
        r = await http.get(
            status_url(gateway), params={"StreamEvent": "stream-stopped", "CallSid": "CA2", "StreamSid": "MZ2"}
        )
        assert r.status == 200
        for bad in (
            {"event_type": "calling.call.play"},
            {"event_type": "calling.call.stream", "params": {"call_id": "x"}},
            [1],
        ):
            r = await http.post(status_url(gateway), json=bad)
            assert r.status == 400
            assert "error" in await r.json()
        r = await http.post(status_url(gateway), data=b"{nope", headers={"Content-Type": "application/json"})
        assert r.status == 400
    await gateway.captured.wait_for(lambda: len(gateway.captured.events_of("status")) == 3)
    swml, cxml, get = gateway.captured.events_of("status")
    assert swml["call_id"] == "call-9" and swml["control_id"] == "stream-1" and swml["state"] == "streaming"
    assert swml["provider"] == "signalwire" and swml["name"] == "live-transcription"
    assert {"call_id", "stream_id", "control_id", "ts", "traceparent"} <= set(swml)
    assert cxml["provider"] == "twilio" and cxml["state"] == "stream-error" and cxml["error"] == "connection_refused"
    assert get["state"] == "stream-stopped"
    subjects = [m.subject for m in gateway.captured.event_msgs]
    assert subjects == ["events.call-9", "events.CA1", "events.CA2"]
    assert gateway.metric("sgw_status_callbacks_total", reason="invalid") == 4


async def test_internal_port_metrics_health_readiness(gateway: RunningGateway) -> None:
    await simulate(SimulateOptions(url=gateway.ws_url, calls=2, duration=0.2, realtime=False))
    await gateway.captured.wait_for(lambda: len(gateway.captured.events_of("stopped")) == 2)
    base = gateway.endpoints.internal_url
    async with aiohttp.ClientSession() as http:
        r = await http.get(f"{base}/healthz")
        assert r.status == 200
        r = await http.get(f"{base}/readyz")
        assert r.status == 200 and (await r.json())["status"] == "ready"
        r = await http.get(f"{base}/metrics")
        text = await r.text()
    samples = parse_metrics(text)
    families = {name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum") for name, _ in samples}
    exported = {n.removesuffix("_total") for n in METRIC_NAMES}
    # route-labelled series appear with their first stream (stream pauses with the first pause of a
    # durable route's stream); everything else is exported from start-up
    assert {n.removesuffix("_total") for n in families if n.startswith("sgw_")} >= exported - {
        "sgw_frames_dropped",
        "sgw_sequence_anomalies",
        "sgw_stream_pauses",
    }
    assert samples[("sgw_frames_published_total", (("route", "default"), ("track", "inbound")))] > 0
    assert samples[("sgw_nats_connected", ())] == 1
    for name, labels in samples:
        for key, _ in labels:
            # Bounded labels only (``kind``: which credential a refused stream presented, five values).
            assert key in {"route", "provider", "track", "reason", "code", "kind", "le"}, (name, key)
    gateway.server.ctx.health.draining = True  # type: ignore[union-attr]
    async with aiohttp.ClientSession() as http:
        r = await http.get(f"{base}/readyz")
        assert r.status == 503 and "draining" in (await r.json())["reasons"]


async def test_one_span_per_stream_and_traceparent_reaches_consumers(
    nats_server: object, gateway_factory: object
) -> None:
    from gateway.embedded_nats import EmbeddedNats

    assert isinstance(nats_server, EmbeddedNats)
    exporter = InMemorySpanExporter()
    settings = load_settings(
        {},
        {
            "server.port": 0,
            "server.internal_port": 0,
            "server.host": "127.0.0.1",
            "nats.url": nats_server.url,
            "routing.source": "static",
        },
    )
    server = GatewayServer(settings, span_processor=SimpleSpanProcessor(exporter))
    endpoints = await server.start()
    import nats

    nc = await nats.connect(nats_server.url)
    sub = await nc.subscribe("audio.>")
    events = await nc.subscribe("events.>")
    try:
        report = await simulate(
            SimulateOptions(url=endpoints.ws_url, calls=2, track="both", duration=0.2, realtime=False)
        )
        audio_msg = await sub.next_msg(timeout=10)
        first_event = await events.next_msg(timeout=10)
    finally:
        await nc.close()
        await server.drain_and_stop()
    spans = exporter.get_finished_spans()
    assert len(spans) == 2  # one per stream, not per frame
    span_by_call = {s.attributes["sgw.call_id"]: s for s in spans if s.attributes}
    assert set(span_by_call) == {c.call_id for c in report.calls}
    for span in spans:
        assert span.kind is SpanKind.SERVER and span.name == "stream"
        assert [e.name for e in span.events][0] == "start" and [e.name for e in span.events][-1] == "stop"
        assert span.status.status_code is not StatusCode.ERROR
        assert span.attributes and span.attributes["sgw.stop_reason"] == "stop"
    ctx = extract_traceparent(audio_msg.headers or {})
    call_id = audio_msg.subject.split(".")[1]
    assert ctx.trace_id == span_by_call[call_id].context.trace_id
    assert ctx.span_id == span_by_call[call_id].context.span_id
    ev_ctx = extract_traceparent(first_event.headers or {})
    assert ev_ctx.trace_id in {s.context.trace_id for s in spans}


async def test_spans_are_exported_over_otlp_http_when_configured(nats_server: object) -> None:
    """A real OTLP/HTTP receiver on loopback gets the stream spans (protobuf) from the exporter."""
    from aiohttp import web
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from gateway.embedded_nats import EmbeddedNats

    assert isinstance(nats_server, EmbeddedNats)
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        req = ExportTraceServiceRequest()
        req.ParseFromString(await request.read())
        received.append(req)
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    settings = load_settings(
        {
            "SGW_OBSERVABILITY__OTLP_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces",
            "SGW_OBSERVABILITY__SERVICE_NAME": "sgw-test",
        },
        {
            "server.port": 0,
            "server.internal_port": 0,
            "server.host": "127.0.0.1",
            "nats.url": nats_server.url,
            "routing.source": "static",
        },
    )
    server = GatewayServer(settings)
    endpoints = await server.start()
    try:
        report = await simulate(SimulateOptions(url=endpoints.ws_url, calls=2, duration=0.2, realtime=False))
    finally:
        await server.drain_and_stop()  # shutting the provider down flushes the batch processor
        await runner.cleanup()
    spans = [s for req in received for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert sorted(s.name for s in spans) == ["stream", "stream"]
    services = {
        a.value.string_value
        for req in received
        for rs in req.resource_spans
        for a in rs.resource.attributes
        if a.key == "service.name"
    }
    assert services == {"sgw-test"}
    call_ids = {a.value.string_value for s in spans for a in s.attributes if a.key == "sgw.call_id"}
    assert call_ids == {c.call_id for c in report.calls}

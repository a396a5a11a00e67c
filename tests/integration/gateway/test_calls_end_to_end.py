"""Simulated SignalWire calls through the real gateway into a real nats-server (issue 2, item 9)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from nats.aio.msg import Msg

from gateway.tools.simulate import SimulateOptions, SimulationReport, simulate
from tests.integration.gateway.conftest import GatewayFactory, RunningGateway

CODEC_LABEL = {"PCMU": "PCMU/8000", "PCMA": "PCMA/8000", "L16@16000": "L16/16000", "L16@24000": "L16/24000"}


def assert_delivered_exactly(gw: RunningGateway, report: SimulationReport, codec: str) -> None:
    by_subject: dict[str, list[Msg]] = defaultdict(list)
    for msg in gw.captured.audio:
        by_subject[msg.subject].append(msg)
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for ev in gw.captured.events:
        events[ev["call_id"]].append(ev)
    for call in report.calls:
        assert call.error is None, call.error
        assert call.close_code == 1000, (call.call_id, call.close_code, call.close_reason)
        evs = events[call.call_id]
        assert evs[0]["type"] == "started" and evs[-1]["type"] == "stopped", [e["type"] for e in evs]
        started, stopped = evs[0], evs[-1]
        assert started["stream_id"] == call.stream_id
        assert started["codec"] == CODEC_LABEL[codec]
        assert started["tracks"] == list(call.tracks)
        assert stopped["reason"] == "stop"
        traceparent = started["traceparent"]
        assert traceparent.startswith("00-") and len(traceparent) == 55
        for track in call.tracks:
            msgs = by_subject[f"audio.{call.call_id}.{track}"]
            sent = call.sent[track]
            assert [m.data for m in msgs] == sent, f"{call.call_id}/{track}: {len(msgs)} received, {len(sent)} sent"
            assert [int(m.headers["Sgw-Seq"]) for m in msgs] == list(range(1, len(sent) + 1))  # type: ignore[index]
            for m in msgs:
                headers = m.headers or {}
                assert headers["Sgw-Codec"] == CODEC_LABEL[codec]
                assert headers["Sgw-Stream-Id"] == call.stream_id
                assert headers["traceparent"] == traceparent
                assert headers["Sgw-Ts"].isdigit()
            stats = stopped["tracks"][track]
            assert stats == {
                "frames": len(sent),
                "bytes": sum(map(len, sent)),
                "gaps": 0,
                "duplicates": 0,
                "reordered": 0,
                "dropped": 0,
            }


async def test_fifty_calls_both_tracks_every_frame_exactly_once(gateway: RunningGateway) -> None:
    opts = SimulateOptions(
        url=gateway.ws_url,
        calls=50,
        track="both",
        codec="PCMU",
        duration=1.0,
        realtime=True,
        control_id="sales-1",
        seed=7,
    )
    report = await simulate(opts)
    await gateway.captured.wait_for(lambda: len(gateway.captured.events_of("stopped")) == 50)
    assert_delivered_exactly(gateway, report, "PCMU")
    total = sum(len(f) for c in report.calls for f in c.sent.values())
    assert total == 50 * 2 * 50
    assert gateway.metric("sgw_frames_published_total") == total
    assert gateway.metric("sgw_streams_started_total", provider="signalwire") == 50
    await gateway.metric_reaches("sgw_streams_closed_total", 50, code="1000")
    await gateway.metric_reaches("sgw_streams_active", 0)


@pytest.mark.parametrize("codec", ["PCMA", "L16@16000", "L16@24000"])
@pytest.mark.parametrize("dialect", ["signalwire", "twilio"])
async def test_codecs_and_dialects(gateway: RunningGateway, codec: str, dialect: str) -> None:
    opts = SimulateOptions(
        url=gateway.ws_url, calls=2, track="both", codec=codec, duration=0.4, realtime=False, dialect=dialect
    )  # type: ignore[arg-type]
    report = await simulate(opts)
    await gateway.captured.wait_for(lambda: len(gateway.captured.events_of("stopped")) == 2)
    assert_delivered_exactly(gateway, report, codec)
    assert gateway.metric("sgw_streams_started_total", provider=dialect) == 2


@pytest.mark.parametrize(
    ("fault", "expect"),
    [
        ({"drop": 0.1}, lambda st, c: st["gaps"] == c.frames_dropped["inbound"] > 0),
        ({"duplicate": 0.1}, lambda st, c: st["duplicates"] == c.frames_duplicated["inbound"] > 0 and st["gaps"] == 0),
        # a swapped pair first looks like a gap, then the late frame arrives: counted as both, except when
        # the very first frame is the late one (nothing came before it to leave a gap)
        (
            {"reorder": 0.1},
            lambda st, c: (
                st["reordered"] == c.frames_reordered["inbound"] > 0
                and st["gaps"] in (st["reordered"], st["reordered"] - 1)
            ),
        ),
    ],
)
async def test_faults_are_counted_in_stopped_and_metrics(
    gateway: RunningGateway, fault: dict[str, float], expect: Any
) -> None:
    opts = SimulateOptions(url=gateway.ws_url, calls=3, track="inbound", duration=2.0, realtime=False, seed=3, **fault)  # type: ignore[arg-type]
    report = await simulate(opts)
    await gateway.captured.wait_for(lambda: len(gateway.captured.events_of("stopped")) == 3)
    for call in report.calls:
        stopped = next(e for e in gateway.captured.events_of("stopped") if e["call_id"] == call.call_id)
        stats = stopped["tracks"]["inbound"]
        assert stats["frames"] == len(call.sent["inbound"])  # everything sent is published, faults included
        assert expect(stats, call), (fault, stats, call.frames_dropped, call.frames_duplicated, call.frames_reordered)
    for reason, key in (("gap", "gaps"), ("duplicate", "duplicates"), ("reordered", "reordered")):
        total = sum(e["tracks"]["inbound"][key] for e in gateway.captured.events_of("stopped"))
        await gateway.metric_reaches("sgw_sequence_anomalies_total", total, reason=reason)


async def test_missing_connected_and_abrupt_close(gateway: RunningGateway) -> None:
    report = await simulate(
        SimulateOptions(url=gateway.ws_url, calls=1, duration=0.2, realtime=False, no_connected=True)
    )
    assert report.calls[0].close_code == 1000
    report = await simulate(
        SimulateOptions(url=gateway.ws_url, calls=1, duration=0.2, realtime=False, abrupt_close=True)
    )
    call = report.calls[0]
    await gateway.captured.wait_for(
        lambda: any(e["call_id"] == call.call_id for e in gateway.captured.events_of("stopped"))
    )
    stopped = next(e for e in gateway.captured.events_of("stopped") if e["call_id"] == call.call_id)
    assert stopped["reason"] == "closed"  # no stop message: stopped is still the last event
    assert stopped["tracks"]["inbound"]["frames"] == len(call.sent["inbound"])


async def test_control_id_in_custom_parameters_routes_and_names_subjects(
    gateway_factory: GatewayFactory, tmp_path: Any
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        """
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: analytics}
spec:
  match: {controlId: "ana-*"}
  target: {subject: "analytics.{control_id}.{track}", eventsSubject: "analytics-events.{call_id}"}
"""
    )
    gw = await gateway_factory(**{"routing.source": "file", "routing.file": routes})
    opts = SimulateOptions(
        url=gw.ws_url, calls=1, duration=0.2, realtime=False, control_id="ana-7", control_id_in_path=False
    )
    report = await simulate(opts)
    await gw.captured.wait_for(lambda: len(gw.captured.events_of("stopped")) == 1)
    assert {m.subject for m in gw.captured.audio} == {"analytics.ana-7.inbound"}
    assert {m.subject for m in gw.captured.event_msgs} == {f"analytics-events.{report.calls[0].call_id}"}
    assert gw.captured.events_of("started")[0]["route"] == "analytics"

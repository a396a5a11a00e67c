"""Simulated SignalWire calls through the real gateway into a real nats-server (issue 2, item 9)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import defaultdict
from typing import Any

import aiohttp
import pytest
from nats.aio.msg import Msg

from gateway.tools.simulate import SimulateOptions, SimulationReport, simulate
from tests.helpers import eventually
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
        url=gateway.ws_url, calls=2, track="both", codec=codec, duration=0.4, realtime=False, provider=dialect
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


async def test_several_streams_of_one_call_stay_apart(gateway: RunningGateway) -> None:
    """SWML lets one call run several streams at once (distinct ``control_id``). On the default
    route they share ``audio.{call_id}.{track}``; each frame names its stream in ``Sgw-Stream-Id``
    and each stream numbers its own frames from 1 in ``Sgw-Seq``, and each stream gets its own
    back-channel, named in its ``started`` event."""
    call_id = "76ac3c36-56da-4a3e-a0d6-b5f8df6da9ad"
    streams = await asyncio.gather(
        *(
            simulate(
                SimulateOptions(
                    url=gateway.ws_url,
                    track="both",
                    duration=1.2,
                    realtime=True,
                    call_id=call_id,
                    control_id=control_id,
                )
            )
            for control_id in ("transcribe", "record")
        )
    )
    calls = [report.calls[0] for report in streams]
    assert calls[0].stream_id != calls[1].stream_id
    for call in calls:
        assert (call.close_code, call.error) == (1000, None)
    total = sum(c.frames_sent for c in calls)
    await gateway.captured.wait_for(lambda: len(gateway.captured.audio) >= total)
    started = {e["stream_id"]: e for e in gateway.captured.events_of("started")}
    for call in calls:
        for track in call.tracks:
            mine = [
                m
                for m in gateway.captured.audio
                if m.subject == f"audio.{call_id}.{track}" and (m.headers or {})["Sgw-Stream-Id"] == call.stream_id
            ]
            assert [m.data for m in mine] == call.sent[track]
            assert [int((m.headers or {})["Sgw-Seq"]) for m in mine] == list(range(1, len(call.sent[track]) + 1))
        assert started[call.stream_id]["control_id"] == call.control_id
        assert started[call.stream_id]["playback_subject"] == f"play.{call_id}.{call.stream_id}"
    assert len({e["playback_subject"] for e in started.values()}) == 2


async def test_each_stream_of_one_call_takes_only_its_own_playback(gateway: RunningGateway) -> None:
    call_id = "one-call-two-streams"
    tasks = [
        asyncio.create_task(
            simulate(
                SimulateOptions(url=gateway.ws_url, duration=1.5, realtime=True, call_id=call_id, control_id=control_id)
            )
        )
        for control_id in ("bot", "recorder")
    ]
    await gateway.captured.wait_for(lambda: len(gateway.captured.events_of("started")) == 2)
    by_control = {e["control_id"]: e for e in gateway.captured.events_of("started")}
    await gateway.nc.publish(by_control["bot"]["playback_subject"], b'{"type":"mark","name":"for-the-bot"}')
    await gateway.nc.publish(by_control["recorder"]["playback_subject"], b'{"type":"mark","name":"for-the-recorder"}')
    reports = {r.calls[0].control_id: r.calls[0] for r in await asyncio.gather(*tasks)}
    marks = {
        control_id: [json.loads(m)["mark"]["name"] for m in call.received if isinstance(m, str)]
        for control_id, call in reports.items()
    }
    assert marks == {"bot": ["for-the-bot"], "recorder": ["for-the-recorder"]}


async def test_a_connected_stream_keeps_no_upgrade_headers_and_still_streams(gateway: RunningGateway) -> None:
    """picows keeps a connection's upgrade request and response for its whole life; the stream
    empties their header maps once connected (memory per idle stream). Auth read them before that,
    and nothing after the upgrade needs them: the stream carries its frames to the end."""
    ctx = gateway.server.ctx
    assert ctx is not None
    start = {
        "event": "start",
        "start": {
            "streamSid": "headers-stream",
            "callSid": "headers-call",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    payloads = [bytes([n]) * 160 for n in range(3)]
    headers = {"X-Padding": "x" * 2000, "User-Agent": "kept-headers-test"}
    async with aiohttp.ClientSession() as http, http.ws_connect(gateway.ws_url, headers=headers) as ws:
        await ws.send_str(json.dumps(start))
        await eventually(lambda: any(s.session.streaming for s in ctx.registry.counted()), what="stream started")
        (stream,) = ctx.registry.counted()
        transport: Any = stream.transport
        assert len(transport.request.headers) == 0 and len(transport.response.headers) == 0
        for n, payload in enumerate(payloads):
            media = {"track": "inbound", "timestamp": str(20 * n), "payload": base64.b64encode(payload).decode()}
            await ws.send_str(json.dumps({"event": "media", "media": media}))
        await ws.send_str(json.dumps({"event": "stop"}))
        closed = await ws.receive(timeout=10)
        assert (closed.type, ws.close_code) == (aiohttp.WSMsgType.CLOSE, 1000), closed
    await eventually(lambda: any(e["type"] == "stopped" for e in gateway.captured.events), what="stopped published")
    received = [m.data for m in gateway.captured.audio if m.subject == "audio.headers-call.inbound"]
    assert received == payloads

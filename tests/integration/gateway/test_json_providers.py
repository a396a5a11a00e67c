"""Telnyx, Plivo, Bandwidth and Exotel sessions replayed through a real gateway into a real
nats-server: every frame once, on its subject, in order, with its headers; lifecycle events;
``?provider=`` forcing; and a back-channel round trip per provider."""

from __future__ import annotations

import asyncio
import base64
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sgw_routes.subjects import sanitize_token
from tests.integration.gateway.conftest import RunningGateway

FIXTURES = Path(__file__).parents[2] / "fixtures"


@dataclass
class Expected:
    """What one recorded session must produce, worked out from the fixture itself."""

    provider: str
    fixture: str
    codec: str
    events: list[str]
    """Event types on the stream's events subject, in order."""
    anomalies: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per track ``(gaps, reordered)`` the ``stopped`` event must report (0, 0 when absent)."""
    control_id: str = ""

    @property
    def frames(self) -> list[str]:
        return (FIXTURES / f"{self.fixture}.jsonl").read_text().splitlines()

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.frames]

    @property
    def start(self) -> dict[str, Any]:
        kind = "eventType" if self.provider == "bandwidth" else "event"
        return next(m for m in self.messages if m.get(kind) == "start")

    @property
    def ids(self) -> tuple[str, str]:
        """(call_id, stream_id) in the provider's own spelling."""
        start = self.start
        if self.provider == "telnyx":
            return start["start"]["call_control_id"], start["stream_id"]
        if self.provider == "plivo":
            return start["start"]["callId"], start["start"]["streamId"]
        if self.provider == "bandwidth":
            return start["metadata"]["callId"], start["metadata"]["streamId"]
        return start["start"]["call_sid"], start["stream_sid"]

    @property
    def has_stop(self) -> bool:
        kind = "eventType" if self.provider == "bandwidth" else "event"
        return any(m.get(kind) == "stop" for m in self.messages)

    def published(self) -> dict[str, list[tuple[bytes, int]]]:
        """Per track, the ``(payload, Sgw-Ts)`` the consumers must see, in order."""
        frames: dict[str, list[tuple[int, bytes, int]]] = defaultdict(list)
        clock: dict[str, int] = defaultdict(int)  # Bandwidth: bytes so far per track
        base = None
        for position, message in enumerate(self.messages):
            if self.provider == "bandwidth":
                if message.get("eventType") != "media":
                    continue
                track, payload = message.get("track", "inbound"), base64.b64decode(message["payload"])
                ts = clock[track] // 8  # PCMU: 8 bytes a millisecond
                clock[track] += len(payload)
                frames[track].append((position, payload, ts))
                continue
            if message.get("event") != "media":
                continue
            media = message["media"]
            track, payload = media.get("track", "inbound"), base64.b64decode(media["payload"])
            ts = int(media["timestamp"])
            if self.provider == "plivo":  # epoch ms, relative to the stream's first frame
                base = ts if base is None else base
                ts -= base
            # Telnyx: released in chunk order (every swap in these fixtures fits the window)
            key = int(media["chunk"]) if self.provider == "telnyx" else position
            frames[track].append((key, payload, ts))
        return {track: [(p, t) for _, p, t in sorted(items, key=lambda i: i[0])] for track, items in frames.items()}


SESSIONS = [
    Expected(
        "telnyx", "telnyx_bidirectional_pcmu", "PCMU/8000", ["started", "mark", "dtmf", "stopped"], {"inbound": (0, 1)}
    ),
    Expected(
        "telnyx",
        "telnyx_both_tracks_pcma",
        "PCMA/8000",
        ["started", "error", "dtmf", "stopped"],
        {"inbound": (1, 2), "outbound": (0, 2)},  # chunk 11 never came; two swaps per track
        control_id="tx-both",
    ),
    Expected("plivo", "plivo_mulaw_8k", "PCMU/8000", ["started", "mark", "dtmf", "stopped"]),
    Expected("plivo", "plivo_l16_16k_both", "L16/16000", ["started", "stopped"], control_id="plivo-both"),
    Expected("bandwidth", "bandwidth_pcmu", "PCMU/8000", ["started", "stopped"]),
    Expected("exotel", "exotel_l16_8k", "L16/8000", ["started", "dtmf", "mark", "stopped"]),
    Expected("exotel", "exotel_l16_16k_both", "L16/16000", ["started", "stopped"]),
]


async def play(url: str, frames: list[str], *, close: bool) -> int | None:
    """Send a session's frames; then wait for the gateway's close (after a ``stop``), or close."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        for frame in frames:
            await ws.send_str(frame)
        if close:
            await ws.close()
        else:
            await asyncio.wait_for(ws.receive(), 10)
        return ws.close_code


@pytest.mark.parametrize("forced", [False, True], ids=["detected", "forced"])
@pytest.mark.parametrize("session", SESSIONS, ids=[s.fixture for s in SESSIONS])
async def test_recorded_session_is_published_exactly(gateway: RunningGateway, session: Expected, forced: bool) -> None:
    url = gateway.ws_url + (f"?provider={session.provider}" if forced else "")
    code = await play(url, session.frames, close=not session.has_stop)
    assert code == 1000
    captured = gateway.captured
    await captured.wait_for(lambda: bool(captured.events_of("stopped")))
    call_id, stream_id = session.ids
    started, stopped = captured.events_of("started")[0], captured.events_of("stopped")[0]
    assert [e["type"] for e in captured.events] == session.events
    assert {m.subject for m in captured.event_msgs} == {f"events.{sanitize_token(call_id)}"}
    assert (started["provider"], started["call_id"], started["stream_id"]) == (session.provider, call_id, stream_id)
    assert started["codec"] == session.codec
    assert started["control_id"] == (session.control_id or stream_id)
    assert stopped["reason"] == ("stop" if session.has_stop else "closed")
    expected = session.published()
    traceparent = started["traceparent"]
    for track, frames in expected.items():
        msgs = [m for m in captured.audio if m.subject == f"audio.{sanitize_token(call_id)}.{track}"]
        assert [m.data for m in msgs] == [payload for payload, _ in frames], track  # each once, in order
        headers = [m.headers or {} for m in msgs]
        assert [int(h["Sgw-Seq"]) for h in headers] == list(range(1, len(frames) + 1))
        assert [int(h["Sgw-Ts"]) for h in headers] == [ts for _, ts in frames]
        assert {(h["Sgw-Codec"], h["Sgw-Stream-Id"], h["traceparent"]) for h in headers} == {
            (session.codec, stream_id, traceparent)
        }
        gaps, reordered = session.anomalies.get(track, (0, 0))
        assert stopped["tracks"][track] == {
            "frames": len(frames),
            "bytes": sum(len(p) for p, _ in frames),
            "gaps": gaps,
            "duplicates": 0,
            "reordered": reordered,
            "dropped": 0,
        }
    assert len(captured.audio) == sum(len(f) for f in expected.values())
    assert gateway.metric("sgw_streams_started_total", provider=session.provider) == 1
    await gateway.metric_reaches("sgw_streams_closed_total", 1, code="1000")


async def test_telnyx_error_message_is_published_and_the_stream_goes_on(gateway: RunningGateway) -> None:
    session = SESSIONS[1]
    await play(gateway.ws_url, session.frames, close=True)
    await gateway.captured.wait_for(lambda: bool(gateway.captured.events_of("stopped")))
    (error,) = gateway.captured.events_of("error")
    assert error["reason"] == "provider_error" and error["provider_code"] == 100003
    assert error["message"] == "malformed_frame: The frame could not be parsed"
    assert gateway.captured.events_of("stopped")[0]["reason"] == "closed"  # not an error close


async def test_forcing_the_wrong_provider_is_a_malformed_stream(gateway: RunningGateway) -> None:
    exotel = SESSIONS[5]
    code = await play(gateway.ws_url + "?provider=telnyx", exotel.frames[:2], close=False)
    assert code == 1007  # Exotel's start has no stream_id: Telnyx's dialect says malformed
    await gateway.metric_reaches("sgw_protocol_errors_total", 1, reason="malformed")
    assert gateway.metric("sgw_streams_started_total") == 0


# -- back-channel round trips -----------------------------------------------------------------


@dataclass
class RoundTrip:
    session: Expected
    consumer: list[bytes]
    """What a consumer publishes on the playback subject."""
    provider_sees: list[dict[str, Any]]
    """The JSON frames the provider must receive, in order (``{stream_id}`` filled in)."""
    echo: str | None
    """The provider's answer to the mark (the consumers then get a ``mark`` event), if it has one."""
    unsupported: int


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


MARK = b'{"type":"mark","name":"reply-1"}'
CLEAR = b'{"type":"clear"}'
DTMF = b'{"type":"dtmf","digit":"12#"}'

ROUND_TRIPS = [
    RoundTrip(
        SESSIONS[0],
        [b"\xff" * 160, DTMF, MARK, CLEAR],
        [
            {"event": "media", "media": {"payload": _b64(b"\xff" * 160)}},
            {"event": "mark", "mark": {"name": "reply-1"}},
            {"event": "clear"},
        ],
        '{"event":"mark","stream_id":"32de0dea-53cb-4b21-89a4-9e1819c043bc","sequence_number":"5","mark":{"name":"reply-1"}}',
        unsupported=1,  # Telnyx takes no DTMF
    ),
    RoundTrip(
        SESSIONS[2],
        [b"\x7f" * 320, MARK, DTMF, CLEAR],
        [
            {
                "event": "playAudio",
                "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, "payload": _b64(b"\x7f" * 320)},
            },
            {"event": "checkpoint", "streamId": "{stream_id}", "name": "reply-1"},
            {"event": "sendDTMF", "dtmf": "12#"},
            {"event": "clearAudio", "streamId": "{stream_id}"},
        ],
        '{"event":"playedStream","sequenceNumber":9,"streamId":"a41f9c08-5a3b-4f7e-9d2c-6b1e0f3a7c55","name":"reply-1"}',
        unsupported=0,
    ),
    RoundTrip(
        SESSIONS[4],
        [b"\xff" * 160, MARK, DTMF, CLEAR],
        [
            {"eventType": "playAudio", "media": {"contentType": "audio/pcmu", "payload": _b64(b"\xff" * 160)}},
            {"eventType": "clear"},
        ],
        None,
        unsupported=2,  # no mark, no DTMF at Bandwidth
    ),
    RoundTrip(
        SESSIONS[5],
        [b"\x01\x02" * 500, MARK, b"\x03" * 700, CLEAR, DTMF],
        [
            {"event": "media", "stream_sid": "{stream_id}", "media": {"payload": _b64(b"\x01\x02" * 480)}},
            {"event": "media", "stream_sid": "{stream_id}", "media": {"payload": _b64(b"\x01\x02" * 20 + bytes(280))}},
            {"event": "mark", "stream_sid": "{stream_id}", "mark": {"name": "reply-1"}},
            {"event": "media", "stream_sid": "{stream_id}", "media": {"payload": _b64(b"\x03" * 640)}},
            {"event": "clear", "stream_sid": "{stream_id}"},
        ],
        '{"event":"mark","sequence_number":8,"stream_sid":"b7e2c1d0a9f84e3d2c1b0a9f8e7d6c5b","mark":{"name":"reply-1"}}',
        unsupported=1,  # Exotel takes no DTMF
    ),
]


def _filled(frame: dict[str, Any], stream_id: str) -> dict[str, Any]:
    filled: dict[str, Any] = json.loads(json.dumps(frame).replace("{stream_id}", stream_id))
    return filled


@pytest.mark.parametrize("trip", ROUND_TRIPS, ids=[t.session.provider for t in ROUND_TRIPS])
async def test_back_channel_round_trip(gateway: RunningGateway, trip: RoundTrip) -> None:
    session = trip.session
    frames = session.frames
    opening = frames[: next(i for i, f in enumerate(frames) if '"start"' in f) + 1]
    captured = gateway.captured
    async with aiohttp.ClientSession() as http, http.ws_connect(gateway.ws_url, max_msg_size=0) as ws:
        for frame in opening:
            await ws.send_str(frame)
        await captured.wait_for(lambda: bool(captured.events_of("started")))
        started = captured.events_of("started")[0]
        stream_id = started["stream_id"]
        assert started["playback_subject"] == f"play.{sanitize_token(started['call_id'])}.{stream_id}"
        for message in trip.consumer:
            await gateway.nc.publish(started["playback_subject"], message)
        received = []
        for _ in trip.provider_sees:
            msg = await asyncio.wait_for(ws.receive(), 10)
            assert msg.type is aiohttp.WSMsgType.TEXT, msg
            received.append(json.loads(msg.data))
        assert received == [_filled(f, stream_id) for f in trip.provider_sees]
        if trip.echo is not None:
            await ws.send_str(trip.echo)
            await captured.wait_for(lambda: bool(captured.events_of("mark")))
            assert captured.events_of("mark")[0]["name"] == "reply-1"
        await gateway.metric_reaches("sgw_playback_messages_total", trip.unsupported, reason="unsupported")
        await ws.close()
    await captured.wait_for(lambda: bool(captured.events_of("stopped")))

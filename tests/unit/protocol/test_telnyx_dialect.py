"""The Telnyx dialect (docs/protocols.md sections 3 and 12.2): every message kind, the reorder
window, the back-channel and the status callbacks, as pure table tests."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import CloseCode, RemoteProtocolError
from gateway.protocol.actions import EventOut
from gateway.protocol.dialects.base import StatusError, StatusRequest, as_events
from gateway.protocol.dialects.telnyx import WINDOW, TelnyxDialect, decode, parse_status
from gateway.protocol.events import (
    Connected,
    Dtmf,
    Ignored,
    InboundEvent,
    Mark,
    Media,
    ProviderError,
    Reordered,
    Start,
    Stop,
)
from gateway.protocol.media import Codec
from gateway.protocol.playback import PlayAudio, PlayCommand
from gateway.protocol.session import SessionConfig, StreamSession
from sgw_routes.model import RoutingTable, default_route

FIXTURES = Path(__file__).parents[2] / "fixtures"
STREAM = "32de0dea-53cb-4b21-89a4-9e1819c043bc"


def start(**body: Any) -> str:
    start: dict[str, Any] = {
        "user_id": "user-1",
        "call_control_id": "v3:call-1",
        "custom_parameters": {"tenant": "acme"},
        "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
    }
    start.update(body)
    return json.dumps(
        {
            "event": "start",
            "sequence_number": "1",
            "stream_id": STREAM,
            "start": {k: v for k, v in start.items() if v is not None},
        }
    )


def media(chunk: int | None, track: str = "inbound", payload: bytes | None = None) -> str:
    body: dict[str, Any] = {
        "track": track,
        "payload": base64.b64encode(payload or bytes([(chunk or 0) % 256]) * 160).decode(),
    }
    if chunk is not None:
        body |= {"chunk": str(chunk), "timestamp": str(chunk * 20)}
    return json.dumps({"event": "media", "sequence_number": str((chunk or 0) + 1), "stream_id": STREAM, "media": body})


def feed(dialect: TelnyxDialect, *frames: str) -> list[InboundEvent]:
    out: list[InboundEvent] = []
    for frame in frames:
        out.extend(as_events(dialect.text(frame)))
    return out


def started() -> TelnyxDialect:
    dialect = TelnyxDialect()
    assert isinstance(dialect.text(start()), Start)
    return dialect


def chunks(events: list[InboundEvent], track: str = "inbound") -> list[int | None]:
    return [e.chunk for e in events if isinstance(e, Media) and e.track == track]


def reordered(events: list[InboundEvent]) -> int:
    return sum(isinstance(e, Reordered) for e in events)


# -- decoding -------------------------------------------------------------------------------------


def test_recorded_session_from_the_reference_decodes_in_order() -> None:
    dialect = TelnyxDialect()
    events = feed(dialect, *(FIXTURES / "telnyx_bidirectional_pcmu.jsonl").read_text().splitlines())
    assert [type(e) for e in events] == [Connected, Start, Reordered, Media, Media, Mark, Dtmf, Stop]
    assert events[0] == Connected(version="1.0.0")
    first = events[1]
    assert isinstance(first, Start)
    assert first.provider == "telnyx"
    assert first.stream_id == STREAM
    assert first.call_id == "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg"
    assert first.account_id == "3e6f995f-85f7-4705-9741-53b116d28237"
    assert first.custom_parameters == {"customer_id": "customer_123"}
    assert first.codec == Codec("PCMU", 8000)
    assert events[2] == Reordered("inbound")
    assert [(e.chunk, e.timestamp) for e in events[3:5] if isinstance(e, Media)] == [(1, 20), (2, 40)]
    assert events[5] == Mark(name="reply-1", sequence=5)
    assert events[6] == Dtmf(digit="1", sequence=36)
    assert events[7] == Stop(sequence=201)
    assert dialect.close() == ()


@pytest.mark.parametrize(
    ("media_format", "codec"),
    [
        ({"encoding": "PCMU", "sample_rate": 8000}, Codec("PCMU", 8000)),
        ({"encoding": "PCMA", "sample_rate": 8000}, Codec("PCMA", 8000)),
        ({"encoding": "L16", "sample_rate": 16000}, Codec("L16", 16000)),
        ({"encoding": "audio/x-mulaw", "sample_rate": "8000"}, Codec("PCMU", 8000)),
        ({"encoding": "audio/x-l16", "sample_rate": 24000}, Codec("L16", 24000)),
        ({"encoding": "G722", "sample_rate": 16000}, Codec("G722", 16000)),
        ({"encoding": "OPUS", "sample_rate": 48000, "channels": 2}, Codec("OPUS", 48000, 2)),
        ({"encoding": "AMR-WB", "sample_rate": 16000}, Codec("AMR-WB", 16000)),
        (None, Codec("PCMU", 8000)),
    ],
)
def test_media_formats(media_format: dict[str, Any] | None, codec: Codec) -> None:
    event = decode(start(media_format=media_format))
    assert isinstance(event, Start) and event.codec == codec


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (None, {}),
        ({}, {}),
        ({"a": "1", "n": 2, "b": True}, {"a": "1", "n": "2", "b": "true"}),
        ([{"name": "tenant", "value": "acme"}, {"name": "n", "value": 3}], {"tenant": "acme", "n": "3"}),
    ],
)
def test_custom_parameters_object_or_name_value_list(params: Any, expected: dict[str, str]) -> None:
    event = decode(start(custom_parameters=params))
    assert isinstance(event, Start) and event.custom_parameters == expected


@pytest.mark.parametrize("counter", ["7", 7])
def test_counters_as_strings_or_numbers(counter: str | int) -> None:
    payload = base64.b64encode(b"\x01\x02").decode()
    frame = {
        "event": "media",
        "sequence_number": counter,
        "stream_id": STREAM,
        "media": {"track": "outbound", "chunk": counter, "timestamp": counter, "payload": payload},
    }
    assert decode(json.dumps(frame)) == Media(track="outbound", payload=b"\x01\x02", timestamp=7, chunk=7)


def test_error_is_a_provider_error_and_the_stream_stays_open() -> None:
    frame = {
        "event": "error",
        "stream_id": STREAM,
        "payload": {"code": 100003, "title": "malformed_frame", "detail": "bad frame"},
    }
    assert decode(json.dumps(frame)) == ProviderError(code=100003, title="malformed_frame", detail="bad frame")
    assert decode('{"event":"error"}') == ProviderError(code=None)
    session = StreamSession(
        tables=lambda: RoutingTable(version=1, default=default_route()),
        config=SessionConfig(),
        traceparent=lambda _: "",
    )
    session.receive(decode(start()), 0.0)
    (error,) = session.receive(decode(json.dumps(frame)), 1.0)
    assert isinstance(error, EventOut) and error.kind == "error"
    assert error.body["reason"] == "provider_error"
    assert (error.body["provider_code"], error.body["title"], error.body["detail"]) == (
        100003,
        "malformed_frame",
        "bad frame",
    )
    assert error.body["message"] == "malformed_frame: bad frame"
    assert "code" not in error.body  # no close code: nothing closes
    assert session.streaming


def test_unknown_fields_and_events() -> None:
    assert decode('{"event":"stop","sequence_number":"9","stop":{"x":[1,2]},"new":{}}') == Stop(sequence=9)
    assert decode('{"event":"media_v2","x":1}') == Ignored(kind="unknown_event")


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1]",
        '{"event": 5}',
        '{"no_event": 1}',
        '{"event":"media"}',
        '{"event":"media","media":{"track":"inbound","payload":"!!not base64!!"}}',
        '{"event":"media","media":{"track":"sideways","payload":""}}',
        '{"event":"media","media":{"track":"inbound","chunk":"-1","payload":""}}',
        '{"event":"start","stream_id":"s","start":{}}',
        '{"event":"start","start":{"call_control_id":"c"}}',
        '{"event":"start","stream_id":"s"}',
        '{"event":"start","stream_id":"s","start":{"call_control_id":"c","media_format":{"sample_rate":0}}}',
        '{"event":"dtmf","dtmf":{}}',
        '{"event":"dtmf"}',
        '{"event":"mark"}',
        '{"event":"error","payload":{"code":"not a number"}}',
        '{"event":"start","stream_id":"s","start":{"call_control_id":"c","custom_parameters":'
        + "[" * 5000
        + "]" * 5000
        + "}}",
    ],
)
def test_malformed_frames_close_1007(frame: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        TelnyxDialect().text(frame)
    assert info.value.reason == "malformed"
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD


def test_binary_frames_are_refused_1003() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        TelnyxDialect().binary(b"\x00\x01")
    assert info.value.close_code == CloseCode.UNSUPPORTED_DATA


# -- the reorder window ---------------------------------------------------------------------------


def test_in_order_frames_pass_straight_through() -> None:
    dialect = started()
    for chunk in range(1, 20):
        event = dialect.text(media(chunk))
        assert type(event) is Media and event.chunk == chunk  # one event, not a tuple: the per-frame path


def test_a_swapped_pair_is_put_back_in_order_and_counted_once() -> None:
    dialect = started()
    events = feed(dialect, media(1), media(3), media(2), media(4))
    assert chunks(events) == [1, 2, 3, 4]
    assert reordered(events) == 1


def test_a_frame_that_never_comes_holds_the_window_for_at_most_its_size() -> None:
    dialect = started()
    events = feed(dialect, media(1), *(media(c) for c in range(3, 3 + WINDOW)))
    assert chunks(events) == [1]  # 3..7 wait for 2
    events = feed(dialect, media(3 + WINDOW))  # one more than the window: give up on 2
    assert chunks(events) == list(range(3, 4 + WINDOW))
    late = feed(dialect, media(2))  # published as it comes; the session counts it by timestamp
    assert chunks(late) == [2] and reordered(late) == 0


def test_duplicates_are_published_for_the_session_to_count() -> None:
    dialect = started()
    events = feed(dialect, media(1), media(3), media(3), media(2), media(2))
    assert chunks(events) == [1, 2, 3, 3, 2]
    assert reordered(events) == 1  # only 2 arrived after a later frame; the copies are duplicates


def test_tracks_are_reordered_independently() -> None:
    dialect = started()
    events = feed(dialect, media(1), media(1, "outbound"), media(3), media(2, "outbound"), media(2))
    assert chunks(events, "inbound") == [1, 2, 3]
    assert chunks(events, "outbound") == [1, 2]
    assert [e for e in events if isinstance(e, Reordered)] == [Reordered("inbound")]


def test_the_first_frame_may_be_late_or_the_stream_may_join_late() -> None:
    dialect = started()
    assert chunks(feed(dialect, media(2), media(1))) == [1, 2]
    joined = started()
    assert chunks(feed(joined, media(500), media(501))) == [500, 501]  # not waiting for chunks 1..499


def test_stop_and_close_flush_the_window_first() -> None:
    dialect = started()
    events = feed(dialect, media(1), media(3), media(5), media(4), '{"event":"stop","sequence_number":"9"}')
    assert chunks(events) == [1, 3, 4, 5]
    assert isinstance(events[-1], Stop)
    closing = started()
    assert chunks(feed(closing, media(1), media(3), media(4))) == [1]
    assert chunks(list(as_events(closing.close()))) == [3, 4]
    assert closing.close() == ()


def test_nothing_is_held_before_start_or_without_chunks() -> None:
    dialect = TelnyxDialect()
    assert chunks(feed(dialect, media(3))) == [3]  # the session refuses media before start
    dialect = started()
    assert chunks(feed(dialect, media(None), media(None))) == [None, None]


def jittered(rng: random.Random, count: int) -> tuple[list[int], int]:
    """Chunks 1..count with disjoint pairs swapped less than the window apart (a jittery network),
    and how many frames arrive after a later one."""
    order = list(range(1, count + 1))
    late = 0
    i = 0
    while i < count - 1:
        d = rng.randint(1, min(WINDOW - 1, count - 1 - i))
        if rng.random() < 0.5:
            order[i], order[i + d] = order[i + d], order[i]
            late += d  # the frames between, and the one swapped back, all follow a later frame
        i += d + 1
    return order, late


def test_jittered_streams_come_out_in_order_and_the_session_counts_each_late_frame() -> None:
    rng = random.Random(11)
    for _ in range(30):
        orders = {}
        expected = 0
        for track in ("inbound", "outbound"):
            orders[track], late = jittered(rng, 100)
            expected += late
        # interleave the two tracks at random, each keeping its own arrival order
        arrival: list[tuple[str, int]] = []
        positions = {"inbound": 0, "outbound": 0}
        while len(arrival) < 200:
            track = rng.choice([t for t in positions if positions[t] < 100])
            arrival.append((track, orders[track][positions[track]]))
            positions[track] += 1
        dialect = started()
        session = StreamSession(
            tables=lambda: RoutingTable(version=1, default=default_route()),
            config=SessionConfig(),
            traceparent=lambda _: "",
        )
        session.receive(decode(start()), 0.0)
        events = feed(dialect, *(media(c, t) for t, c in arrival)) + list(as_events(dialect.close()))
        for event in events:
            if isinstance(event, Media):
                session.media(event)
            else:
                session.receive(event, 0.0)
        for track in ("inbound", "outbound"):
            assert chunks(events, track) == list(range(1, 101))
        stats = session.tracks.values()
        assert reordered(events) == expected == sum(s.reordered for s in stats)
        assert all(s.gaps == 0 and s.duplicates == 0 and s.frames == 100 for s in stats)


# -- back-channel ---------------------------------------------------------------------------------


def test_back_channel_media_mark_clear_and_no_dtmf() -> None:
    dialect = started()
    (audio,) = dialect.encode(STREAM, PlayAudio(b"\xff\x7f" * 80))
    assert json.loads(audio.data) == {
        "event": "media",
        "media": {"payload": base64.b64encode(b"\xff\x7f" * 80).decode()},
    }
    assert not audio.binary and audio.paced_ms == 0
    (mark,) = dialect.encode(STREAM, PlayCommand("mark", "reply-1"))
    assert json.loads(mark.data) == {"event": "mark", "mark": {"name": "reply-1"}}
    (clear,) = dialect.encode(STREAM, PlayCommand("clear"))
    assert json.loads(clear.data) == {"event": "clear"} and clear.clears
    assert dialect.encode(STREAM, PlayCommand("dtmf", "5")) is None


# -- status callbacks -----------------------------------------------------------------------------


def call_control(event_type: str, **payload: Any) -> StatusRequest:
    body = {
        "data": {
            "record_type": "event",
            "event_type": event_type,
            "id": "25dc3731-e51e-4927-a50d-a61cc25984b1",
            "occurred_at": "2026-01-05T10:00:00.000Z",
            "payload": {"call_control_id": "v3:call-1", "call_session_id": "sess-1", "call_leg_id": "leg-1", **payload},
        },
        "meta": {"attempt": 1},
    }
    return StatusRequest(json=body, form={}, headers={"telnyx-signature-ed25519": "sig", "telnyx-timestamp": "1"})


def test_call_control_webhooks() -> None:
    update = parse_status(call_control("streaming.started", stream_url="wss://gw.example.com/stream/bot-7"))
    assert update is not None
    assert (update.provider, update.call_id, update.state) == ("telnyx", "v3:call-1", "streaming.started")
    assert update.control_id == "bot-7"  # the stream URL's route key, as the stream itself resolves it
    assert update.provider_ts == "2026-01-05T10:00:00.000Z"
    assert update.extra == {"call_session_id": "sess-1", "call_leg_id": "leg-1"}
    failed = parse_status(
        call_control(
            "streaming.failed",
            failure_reason="connection_failed",
            stream_id="1edb94f9-7ef0-4150-b502-e0ebadfd9491",
            stream_params={"stream_url": "wss://gw.example.com/stream", "track": "inbound_track"},
            stream_type="websocket",
        )
    )
    assert failed is not None
    assert failed.stream_id == failed.control_id == "1edb94f9-7ef0-4150-b502-e0ebadfd9491"
    assert failed.extra["error"] == "connection_failed" and failed.extra["track"] == "inbound_track"
    stopped = parse_status(call_control("streaming.stopped"))
    assert stopped is not None and stopped.control_id == "v3:call-1"


def texml(headers: dict[str, str] | None = None, **fields: str) -> StatusRequest:
    form = {
        "AccountSid": "f5586561-8ff0-4291-a51b-c7dfe4139ff9",
        "CallSid": "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ld",
        "CallSidLegacy": "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ld",
        "StreamEvent": "stream-started",
        "StreamName": "my_stream",
        "StreamSid": "stream-abc123",
        "Timestamp": "2024-01-15T10:30:00Z",
    }
    form.update(fields)
    return StatusRequest(json=None, form={k: v for k, v in form.items() if v}, headers=headers or {})


def test_texml_stream_callbacks() -> None:
    update = parse_status(texml(StreamEvent="stream-error", StreamError="Connection timeout"))
    assert update is not None
    assert (update.provider, update.state, update.call_id) == (
        "telnyx",
        "stream-error",
        "v3:9X2vxPDFY2RHSJ1EdMS0RHRksMTg7ld",
    )
    assert (update.stream_id, update.name, update.control_id) == ("stream-abc123", "my_stream", "my_stream")
    assert update.account_id == "f5586561-8ff0-4291-a51b-c7dfe4139ff9"
    assert update.extra == {"error": "Connection timeout"}
    signed = parse_status(texml({"telnyx-signature-ed25519": "sig"}, CallSidLegacy=""))
    assert signed is not None and signed.provider == "telnyx"


@pytest.mark.parametrize(
    "request_",
    [
        StatusRequest(
            json=None, form={"StreamEvent": "stream-started", "CallSid": "CA1", "StreamSid": "MZ1"}, headers={}
        ),
        StatusRequest(json={"event_type": "calling.call.stream", "params": {}}, form={}, headers={}),
        StatusRequest(json={"eventType": "mediaStreamStarted"}, form={}, headers={}),
        StatusRequest(json=None, form={"Event": "StartStream"}, headers={}),
        StatusRequest(json={"data": "not an object"}, form={}, headers={}),
    ],
    ids=["twilio cxml", "swml", "bandwidth", "plivo", "not telnyx data"],
)
def test_other_providers_callbacks_are_not_claimed(request_: StatusRequest) -> None:
    assert parse_status(request_) is None


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (call_control("call.answered"), "unsupported event_type"),
        (call_control("streaming.started", call_control_id=""), "call_control_id missing"),
        (
            StatusRequest(json={"data": {"event_type": "streaming.started", "payload": []}}, form={}, headers={}),
            "payload",
        ),
        (texml(StreamEvent="stream-paused"), "unknown StreamEvent"),
        (texml({"telnyx-signature-ed25519": "s"}, CallSid="", CallSidLegacy=""), "CallSid missing"),
    ],
)
def test_telnyx_shaped_callbacks_that_do_not_validate(request_: StatusRequest, reason: str) -> None:
    with pytest.raises(StatusError, match=reason):
        parse_status(request_)

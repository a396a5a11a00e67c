"""The Plivo dialect (docs/protocols.md sections 5 and 12.4): every message kind, epoch timestamps
made relative, ``extra_headers``, the back-channel and the status callbacks, as pure table tests."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import CloseCode, RemoteProtocolError
from gateway.protocol.dialects.base import StatusError, StatusRequest, as_events
from gateway.protocol.dialects.plivo import PlivoDialect, parse_status
from gateway.protocol.events import Dtmf, Ignored, InboundEvent, Mark, Media, Start, Stop
from gateway.protocol.media import Codec
from gateway.protocol.playback import PlayAudio, PlayCommand

FIXTURES = Path(__file__).parents[2] / "fixtures"
STREAM = "a41f9c08-5a3b-4f7e-9d2c-6b1e0f3a7c55"
EPOCH = 1767225600020


def start(extra_headers: Any = "tenant=acme", **body: Any) -> str:
    start: dict[str, Any] = {
        "callId": "call-1",
        "streamId": STREAM,
        "accountId": "MA0000000000000000AB",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
    }
    start.update(body)
    message: dict[str, Any] = {
        "event": "start",
        "sequenceNumber": 1,
        "start": {k: v for k, v in start.items() if v is not None},
    }
    if extra_headers is not None:
        message["extra_headers"] = extra_headers
    return json.dumps(message)


def media(timestamp: int | str | None, track: str = "inbound", chunk: int = 1) -> str:
    body: dict[str, Any] = {"track": track, "chunk": chunk, "payload": base64.b64encode(b"\xff" * 160).decode()}
    if timestamp is not None:
        body["timestamp"] = str(timestamp)
    return json.dumps({"event": "media", "sequenceNumber": chunk + 1, "streamId": STREAM, "media": body})


def feed(dialect: PlivoDialect, *frames: str) -> list[InboundEvent]:
    out: list[InboundEvent] = []
    for frame in frames:
        out.extend(as_events(dialect.text(frame)))
    return out


def test_recorded_session_decodes() -> None:
    events = feed(PlivoDialect(), *(FIXTURES / "plivo_mulaw_8k.jsonl").read_text().splitlines())
    assert [type(e) for e in events] == [Start] + [Media] * 8 + [Mark, Dtmf]  # clearedAudio: no event
    first = events[0]
    assert isinstance(first, Start)
    assert (first.provider, first.stream_id, first.call_id) == ("plivo", STREAM, "0e7d3c1b-2a4f-4c8d-b9e1-7f6a5d4c3b2a")
    assert first.account_id == "MA0000000000000000AB"
    assert first.custom_parameters == {"tenant": "acme", "tier": "gold"}
    assert first.codec == Codec("PCMU", 8000)
    assert [e.timestamp for e in events if isinstance(e, Media)] == [0, 20, 40, 60, 80, 100, 120, 140]
    assert [e.chunk for e in events if isinstance(e, Media)] == list(range(1, 9))
    assert events[9] == Mark(name="reply-1", sequence=10)
    assert events[10] == Dtmf(digit="2", sequence=11)


def test_both_tracks_share_one_clock_base() -> None:
    events = feed(PlivoDialect(), *(FIXTURES / "plivo_l16_16k_both.jsonl").read_text().splitlines())
    first = events[0]
    assert isinstance(first, Start)
    assert first.tracks == ("inbound", "outbound") and first.codec == Codec("L16", 16000)
    assert first.custom_parameters == {"control_id": "plivo-both"}
    frames = [(e.track, e.timestamp) for e in events if isinstance(e, Media)]
    assert frames[:4] == [("inbound", 0), ("outbound", 1), ("inbound", 20), ("outbound", 21)]
    assert isinstance(events[-1], Stop) and events[-1].sequence == 12


def test_timestamps_before_the_first_frame_clamp_to_zero_and_missing_ones_stay_missing() -> None:
    dialect = PlivoDialect()
    dialect.text(start())
    events = feed(dialect, media(EPOCH + 40), media(EPOCH + 20, "outbound"), media(EPOCH + 60), media(None))
    assert [e.timestamp for e in events if isinstance(e, Media)] == [0, 0, 20, None]


@pytest.mark.parametrize(
    ("media_format", "codec"),
    [
        ({"encoding": "audio/x-mulaw", "sampleRate": 8000}, Codec("PCMU", 8000)),
        ({"encoding": "audio/x-l16", "sampleRate": 8000}, Codec("L16", 8000)),
        ({"encoding": "audio/x-l16", "sampleRate": "16000"}, Codec("L16", 16000)),
        ({"encoding": "audio/x-l16;rate=16000"}, Codec("L16", 16000)),
        (None, Codec("L16", 8000)),
    ],
)
def test_media_formats(media_format: dict[str, Any] | None, codec: Codec) -> None:
    event = PlivoDialect().text(start(mediaFormat=media_format))
    assert isinstance(event, Start) and event.codec == codec


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (None, {}),
        ("", {}),
        ("tenant=acme", {"tenant": "acme"}),
        ("test1=12,test2=123", {"test1": "12", "test2": "123"}),
        ("a=1,,flag, b = 2", {"a": "1", "flag": "", "b": "2"}),
        ({"tenant": "acme", "n": 2}, {"tenant": "acme", "n": "2"}),
    ],
)
def test_extra_headers_become_custom_parameters(extra: Any, expected: dict[str, str]) -> None:
    event = PlivoDialect().text(start(extra_headers=extra))
    assert isinstance(event, Start) and event.custom_parameters == expected


def test_stream_id_at_top_level_only_and_track_spellings() -> None:
    raw = json.loads(start(streamId=None, tracks=["both"]))
    raw["streamId"] = "top-level"
    event = PlivoDialect().text(json.dumps(raw))
    assert isinstance(event, Start) and event.stream_id == "top-level" and event.tracks == ("inbound", "outbound")


def test_other_messages() -> None:
    dialect = PlivoDialect()
    assert dialect.text('{"event":"playedStream","sequenceNumber":"4","streamId":"s","name":"cp-1"}') == Mark(
        name="cp-1", sequence=4
    )
    assert dialect.text('{"event":"played","streamId":"s","name":"cp-2"}') == Mark(
        name="cp-2"
    )  # a support article's name
    assert dialect.text('{"event":"clearedAudio","sequenceNumber":5,"streamId":"s"}') == ()
    assert dialect.text('{"event":"dtmf","dtmf":{"digit":"#","track":"inbound"}}') == Dtmf(digit="#")
    assert dialect.text('{"event":"stop"}') == Stop()
    assert dialect.text('{"event":"degraded","x":1}') == Ignored(kind="unknown_event")
    assert dialect.close() == ()


@pytest.mark.parametrize(
    "frame",
    [
        "nope",
        "7",
        '{"event": null}',
        '{"event":"media"}',
        '{"event":"media","media":{"track":"inbound","payload":"%%%"}}',
        '{"event":"media","media":{"track":"inbound","timestamp":"yesterday","payload":""}}',
        '{"event":"start","start":{"streamId":"s"}}',
        '{"event":"start","start":{"callId":"c"}}',
        '{"event":"start"}',
        '{"event":"start","start":{"callId":"c","streamId":"s","tracks":["sideways"]}}',
        '{"event":"start","start":{"callId":"c","streamId":"s"},"extra_headers":5}',
        '{"event":"playedStream"}',
        '{"event":"dtmf"}',
        '{"event":"start","start":{"callId":"c","streamId":"s"},"extra_headers":' + "{" * 3000 + "}" * 3000 + "}",
    ],
)
def test_malformed_frames_close_1007(frame: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        PlivoDialect().text(frame)
    assert info.value.reason == "malformed"
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD


def test_binary_frames_are_refused_1003() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        PlivoDialect().binary(b"\x00")
    assert info.value.close_code == CloseCode.UNSUPPORTED_DATA


@pytest.mark.parametrize(
    ("media_format", "content_type", "rate"),
    [
        ({"encoding": "audio/x-mulaw", "sampleRate": 8000}, "audio/x-mulaw", 8000),
        ({"encoding": "audio/x-l16", "sampleRate": 16000}, "audio/x-l16", 16000),
        ({"encoding": "audio/x-l16;rate=16000"}, "audio/x-l16", 16000),
    ],
)
def test_play_audio_matches_the_stream_format(media_format: dict[str, Any], content_type: str, rate: int) -> None:
    dialect = PlivoDialect()
    dialect.text(start(mediaFormat=media_format))
    (audio,) = dialect.encode(STREAM, PlayAudio(b"\x01\x02" * 160))
    assert json.loads(audio.data) == {
        "event": "playAudio",
        "media": {
            "contentType": content_type,
            "sampleRate": rate,
            "payload": base64.b64encode(b"\x01\x02" * 160).decode(),
        },
    }


def test_checkpoint_clear_and_dtmf() -> None:
    dialect = PlivoDialect()
    dialect.text(start())
    (mark,) = dialect.encode(STREAM, PlayCommand("mark", "reply-1"))
    assert json.loads(mark.data) == {"event": "checkpoint", "streamId": STREAM, "name": "reply-1"}
    (clear,) = dialect.encode(STREAM, PlayCommand("clear"))
    assert json.loads(clear.data) == {"event": "clearAudio", "streamId": STREAM} and clear.clears
    (dtmf,) = dialect.encode(STREAM, PlayCommand("dtmf", "12#"))
    assert json.loads(dtmf.data) == {"event": "sendDTMF", "dtmf": "12#"}


# -- status callbacks -----------------------------------------------------------------------------

CALLBACK = {
    "Event": "StartStream",
    "CallUUID": "816e0b22-6913-4b43-88a9-6d3054b77df9",
    "StreamID": "4543157e-60d3-4c3a-b9d8-189c47686bf0",
    "ServiceURL": "wss://gw.example.com/stream/plivo-bot",
    "Timestamp": "2026-01-05 10:00:00",
}


@pytest.mark.parametrize("as_json", [False, True])
def test_status_callbacks_as_form_or_json(as_json: bool) -> None:
    request = StatusRequest(json=CALLBACK, form={}, headers={}) if as_json else StatusRequest(None, CALLBACK, {})
    update = parse_status(request)
    assert update is not None
    assert (update.provider, update.state) == ("plivo", "StartStream")
    assert (update.call_id, update.stream_id) == (CALLBACK["CallUUID"], CALLBACK["StreamID"])
    assert update.control_id == "plivo-bot"  # the stream URL's route key
    assert update.provider_ts == "2026-01-05 10:00:00"


@pytest.mark.parametrize("event", ["StopStream", "DroppedStream", "DegradedStream"])
def test_every_stream_event(event: str) -> None:
    fields = {"Event": event, "CallUUID": "c-1", "StreamID": "s-1", "Error": "connection error"}
    update = parse_status(StatusRequest(None, fields, {}))
    assert update is not None and update.state == event and update.control_id == "s-1"
    assert update.extra == {"error": "connection error"}


@pytest.mark.parametrize(
    "request_",
    [
        StatusRequest(None, {"StreamEvent": "stream-started", "CallSid": "CA1"}, {}),
        StatusRequest({"eventType": "mediaStreamStarted", "callId": "c"}, {}, {}),
        StatusRequest({"data": {"event_type": "streaming.started"}}, {}, {}),
        StatusRequest(None, {}, {}),
    ],
    ids=["cxml", "bandwidth", "telnyx", "empty"],
)
def test_other_providers_callbacks_are_not_claimed(request_: StatusRequest) -> None:
    assert parse_status(request_) is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"Event": "Hangup", "CallUUID": "c"}, "unknown Event"),
        ({"Event": "StartStream"}, "CallUUID missing"),
        ({"Event": "StartStream", "CallUUID": ""}, "CallUUID missing"),
    ],
)
def test_plivo_shaped_callbacks_that_do_not_validate(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(StatusError, match=reason):
        parse_status(StatusRequest(None, fields, {}))

"""Every Twilio/SignalWire wire variant (docs/protocols.md sections 1, 2 and 12.1) as pure table tests."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import CloseCode, RemoteProtocolError
from gateway.protocol.dialects.twilio import decode
from gateway.protocol.events import Connected, Dtmf, Ignored, Mark, Media, Start, Stop
from gateway.protocol.media import Codec

FIXTURES = Path(__file__).parents[2] / "fixtures"


def _start(**body: Any) -> str:
    start = {
        "streamSid": "7d56cc11-536d-4a45-b4fb-ed3d55be843b",
        "accountSid": "acc",
        "callSid": "call-1",
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    start.update(body)
    return json.dumps(
        {"event": "start", "sequenceNumber": "1", "start": {k: v for k, v in start.items() if v is not None}}
    )


def test_recorded_twilio_session_decodes() -> None:
    events = [decode(line) for line in (FIXTURES / "twilio_connect_stream.jsonl").read_text().splitlines()]
    assert [type(e) for e in events] == [Connected, Start, Media, Media, Media, Mark, Dtmf, Stop]
    connected, start = events[0], events[1]
    assert isinstance(connected, Connected) and connected.version == "1.0.0"
    assert isinstance(start, Start)
    assert start.stream_id == "MZ00000000000000000000000000000001"
    assert start.call_id == "CA00000000000000000000000000000001"
    assert start.custom_parameters == {"token": "k3y-123", "tenant": "acme"}
    assert start.codec == Codec("PCMU", 8000)
    media = events[2]
    assert isinstance(media, Media)
    assert (media.track, media.timestamp, media.chunk) == ("inbound", 20, 1)
    assert set(media.payload) == {0xFF}  # mu-law silence, base64-decoded once
    dtmf = events[6]
    assert isinstance(dtmf, Dtmf) and dtmf.digit == "1" and dtmf.duration_ms is None


def test_recorded_signalwire_session_decodes() -> None:
    events = [decode(line) for line in (FIXTURES / "signalwire_stream.jsonl").read_text().splitlines()]
    assert [type(e) for e in events] == [Connected, Start, Media, Dtmf, Mark, Stop]
    assert isinstance(events[0], Connected) and events[0].version == "0.2.0"
    start = events[1]
    assert isinstance(start, Start)
    assert start.stream_id == "7d56cc11-536d-4a45-b4fb-ed3d55be843b"  # only inside start, no top-level streamSid
    assert start.custom_parameters == {"customer_tier": "gold"}
    dtmf = events[3]
    assert isinstance(dtmf, Dtmf) and dtmf.digit == "5" and dtmf.duration_ms == 2000
    assert events[5] == Stop(sequence=251)  # stop without a body


@pytest.mark.parametrize(
    ("media_format", "codec"),
    [
        ({"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}, Codec("PCMU", 8000)),
        ({"encoding": "audio/x-L16", "sampleRate": 16000, "channels": 1}, Codec("L16", 16000)),
        ({"encoding": "audio/x-L16", "sampleRate": 24000, "channels": 1}, Codec("L16", 24000)),
        ({"encoding": "audio/x-alaw", "sampleRate": 8000}, Codec("PCMA", 8000)),
        ({"encoding": "PCMA", "sampleRate": 8000}, Codec("PCMA", 8000)),
        ({"encoding": "audio/opus", "sampleRate": 48000}, Codec("OPUS", 48000)),
        (None, Codec("PCMU", 8000)),
    ],
)
def test_media_formats(media_format: dict[str, Any] | None, codec: Codec) -> None:
    event = decode(_start(mediaFormat=media_format))
    assert isinstance(event, Start)
    assert event.codec == codec


def test_codec_labels_and_frame_arithmetic() -> None:
    assert Codec("PCMU", 8000).label == "PCMU/8000"
    assert Codec("L16", 24000).label == "L16/24000"
    assert Codec("L16", 24000).bytes_per_ms * 20 == 960  # docs/protocols.md 0.2: 960 bytes per 20 ms
    assert Codec("PCMA", 8000).bytes_per_ms * 20 == 160


@pytest.mark.parametrize(
    ("params", "expected"),
    [(None, {}), ({}, {}), ({"a": "1", "n": 2, "b": True}, {"a": "1", "n": "2", "b": "true"})],
)
def test_custom_parameters_absent_empty_full(params: dict[str, Any] | None, expected: dict[str, str]) -> None:
    event = decode(_start(customParameters=params))
    assert isinstance(event, Start)
    assert event.custom_parameters == expected


def test_streamsid_at_top_level_only() -> None:
    raw = json.loads(_start(streamSid=None))
    raw["streamSid"] = "MZ1"
    event = decode(json.dumps(raw))
    assert isinstance(event, Start) and event.stream_id == "MZ1"


@pytest.mark.parametrize("counter", ["7", 7])
def test_counters_as_strings_or_numbers(counter: str | int) -> None:
    payload = base64.b64encode(b"\x01\x02").decode()
    msg = {
        "event": "media",
        "sequenceNumber": counter,
        "media": {"track": "outbound", "chunk": counter, "timestamp": counter, "payload": payload},
    }
    event = decode(json.dumps(msg))
    assert event == Media(track="outbound", payload=b"\x01\x02", timestamp=7, chunk=7)


def test_tracks_are_normalised() -> None:
    event = decode(_start(tracks=["inbound_track", "outbound_track"]))
    assert isinstance(event, Start) and event.tracks == ("inbound", "outbound")


def test_raw_event_envelope_is_unwrapped() -> None:
    inner = {"event": "connected", "protocol": "Call", "version": "0.2.0"}
    envelope = {
        "timestamp": 1,
        "direction": "inbound",
        "eventType": "connected",
        "sequenceNumber": 0,
        "rawEvent": inner,
    }
    assert decode(json.dumps(envelope)) == Connected(version="0.2.0", protocol="Call")
    start_env = {"eventType": "start", "rawEvent": json.loads(_start())}
    assert isinstance(decode(json.dumps(start_env)), Start)


def test_unknown_fields_and_unknown_events() -> None:
    msg = {"event": "stop", "sequenceNumber": "3", "brandNew": {"x": [1, 2]}, "stop": {"callSid": "c", "extra": 1}}
    assert decode(json.dumps(msg)) == Stop(sequence=3)
    assert decode('{"event":"clearAck","x":1}') == Ignored(kind="unknown_event")


def test_mark_and_dtmf_with_duration() -> None:
    assert decode('{"event":"mark","mark":{"name":"m1"}}') == Mark(name="m1")
    assert decode('{"event":"dtmf","dtmf":{"digit":"#","duration":260}}') == Dtmf(digit="#", duration_ms=260)


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1,2,3]",
        '{"event": 5}',
        '{"no_event": true}',
        '{"event":"media","media":{"track":"inbound","payload":"!!!not-base64!!!"}}',
        '{"event":"media","media":{"track":"sideways","payload":""}}',
        '{"event":"media","sequenceNumber":"-1","media":{"track":"inbound","payload":""}}',
        '{"event":"media","sequenceNumber":"99999999999999999999999","media":{"track":"inbound","payload":""}}',
        '{"event":"media"}',
        '{"event":"start","start":{"callSid":"c"}}',
        '{"event":"start","start":{"streamSid":"s"}}',
        '{"event":"start","start":{"streamSid":"s","callSid":"c","mediaFormat":{"encoding":"x","sampleRate":0}}}',
        '{"event":"dtmf","dtmf":{}}',
        '{"rawEvent": {"event":"media"}}',
        '{"rawEvent": 12}',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_malformed_frames_raise_typed_errors(frame: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode(frame)
    assert info.value.reason == "malformed"
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD
    assert len(info.value.close_message.encode()) <= 123

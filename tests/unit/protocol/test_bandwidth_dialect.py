"""The Bandwidth dialect (docs/protocols.md sections 6 and 12.5): every message kind, the
back-channel and the webhooks, as pure table tests."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import CloseCode, RemoteProtocolError
from gateway.protocol.dialects.bandwidth import BandwidthDialect, decode, parse_status
from gateway.protocol.dialects.base import StatusError, StatusRequest
from gateway.protocol.events import Ignored, Media, Start, Stop
from gateway.protocol.media import Codec
from gateway.protocol.playback import PlayAudio, PlayCommand

FIXTURES = Path(__file__).parents[2] / "fixtures"
PAYLOAD = base64.b64encode(b"\x7f" * 160).decode()


def start(tracks: Any = None, **meta: Any) -> str:
    metadata: dict[str, Any] = {
        "accountId": "9900001",
        "callId": "c-1",
        "streamId": "s-1",
        "streamName": "bot",
        "tracks": tracks
        if tracks is not None
        else [{"name": "inbound", "mediaFormat": {"encoding": "audio/PCMU", "sampleRate": 8000}}],
    }
    metadata.update(meta)
    return json.dumps(
        {
            "eventType": "start",
            "metadata": {k: v for k, v in metadata.items() if v is not None},
            "streamParams": {"tenant": "acme"},
        }
    )


def test_recorded_session_decodes() -> None:
    events = [decode(line) for line in (FIXTURES / "bandwidth_pcmu.jsonl").read_text().splitlines()]
    assert [type(e) for e in events] == [Start] + [Media] * 8 + [Stop]
    first = events[0]
    assert isinstance(first, Start)
    assert first.provider == "bandwidth"
    assert (first.stream_id, first.call_id, first.account_id) == (
        "s-1f0e2d3c-4b5a-4968-8776-655443322110",
        "c-86d5e1b0-4e9f-4a3b-8c2d-1f0e9d8c7b6a",
        "9900001",
    )
    assert first.custom_parameters == {"tenant": "acme", "priority": "2"}
    assert first.codec == Codec("PCMU", 8000) and first.tracks == ("inbound",)
    frames = [e for e in events if isinstance(e, Media)]
    assert all(e.timestamp is None and e.chunk is None for e in frames)  # the session counts the bytes
    assert [e.payload[0] for e in frames] == [(c * 7 + 1) % 256 for c in range(1, 9)]


@pytest.mark.parametrize(
    "frame",
    [
        '{"eventType":"media","track":"outbound","payload":"' + PAYLOAD + '"}',
        '{"eventType":"media","sequenceNumber":5,"track":"outbound","payload":"' + PAYLOAD + '"}',
        '{"track":"outbound","payload":"' + PAYLOAD + '","eventType":"media"}',
        '{ "eventType" : "media", "track": "outbound", "payload": "' + PAYLOAD + '"}',
    ],
    ids=["usual", "with sequenceNumber", "eventType last", "spaced"],
)
def test_media_in_any_spelling_is_the_canonical_event(frame: str) -> None:
    event = decode(frame)
    assert type(event) is Media
    assert event == Media(payload=b"\x7f" * 160, track="outbound")


def test_tracks_and_formats() -> None:
    both = decode(
        start(
            tracks=[
                {"name": "inbound", "mediaFormat": {"encoding": "audio/PCMU", "sampleRate": 8000}},
                {"name": "outbound", "mediaFormat": {"encoding": "audio/PCMU", "sampleRate": 8000}},
            ]
        )
    )
    assert isinstance(both, Start) and both.tracks == ("inbound", "outbound")
    l16 = decode(start(tracks=[{"name": "inbound", "mediaFormat": {"encoding": "audio/L16", "sampleRate": 16000}}]))
    assert isinstance(l16, Start) and l16.codec == Codec("L16", 16000)
    bare = decode(start(tracks=[]))
    assert isinstance(bare, Start) and bare.tracks == ("inbound",) and bare.codec == Codec("PCMU", 8000)


def test_stop_and_unknown_events() -> None:
    assert decode('{"eventType":"stop","metadata":{"streamId":"s-1"}}') == Stop()
    assert decode('{"eventType":"transcription","text":"hi"}') == Ignored(kind="unknown_event")


@pytest.mark.parametrize(
    "frame",
    [
        "{",
        '"media"',
        '{"eventType": 3}',
        '{"event":"media","payload":""}',
        '{"eventType":"media"}',
        '{"eventType":"media","payload":"@@@"}',
        '{"eventType":"media","track":"sideways","payload":""}',
        '{"eventType":"start"}',
        '{"eventType":"start","metadata":{"callId":"c"}}',
        '{"eventType":"start","metadata":{"streamId":"s"}}',
        '{"eventType":"start","metadata":{"callId":"c","streamId":"s","tracks":[{"name":"sideways"}]}}',
        '{"eventType":"start","metadata":{"callId":"c","streamId":"s"},"streamParams":' + "[" * 5000 + "]" * 5000 + "}",
    ],
)
def test_malformed_frames_close_1007(frame: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        BandwidthDialect().text(frame)
    assert info.value.reason == "malformed"
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD


def test_binary_frames_are_refused_1003() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        BandwidthDialect().binary(b"\x00")
    assert info.value.close_code == CloseCode.UNSUPPORTED_DATA


@pytest.mark.parametrize(
    ("encoding", "rate", "content_type"),
    [
        ("audio/PCMU", 8000, "audio/pcmu"),
        ("audio/L16", 16000, "audio/pcm;rate=16000;channels=1;bit-depth=16;endian=little;encoding=signed"),
        ("audio/L16", 24000, "audio/pcm;rate=24000;channels=1;bit-depth=16;endian=little;encoding=signed"),
    ],
)
def test_play_audio_in_the_streams_codec(encoding: str, rate: int, content_type: str) -> None:
    dialect = BandwidthDialect()
    dialect.text(start(tracks=[{"name": "inbound", "mediaFormat": {"encoding": encoding, "sampleRate": rate}}]))
    (audio,) = dialect.encode("s-1", PlayAudio(b"\x01" * 320))
    assert json.loads(audio.data) == {
        "eventType": "playAudio",
        "media": {"contentType": content_type, "payload": base64.b64encode(b"\x01" * 320).decode()},
    }


def test_clear_and_what_bandwidth_cannot_take() -> None:
    dialect = BandwidthDialect()
    dialect.text(start())
    (clear,) = dialect.encode("s-1", PlayCommand("clear"))
    assert json.loads(clear.data) == {"eventType": "clear"} and clear.clears
    assert dialect.encode("s-1", PlayCommand("mark", "m")) is None
    assert dialect.encode("s-1", PlayCommand("dtmf", "1")) is None
    pcma = BandwidthDialect()
    pcma.text(start(tracks=[{"name": "inbound", "mediaFormat": {"encoding": "audio/PCMA", "sampleRate": 8000}}]))
    assert pcma.encode("s-1", PlayAudio(b"\xd5" * 160)) is None  # no PCMA playback: counted unsupported
    assert dialect.close() == ()


# -- webhooks -------------------------------------------------------------------------------------


def webhook(event: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventType": event,
        "eventTime": "2026-01-05T10:00:00.000Z",
        "accountId": "9900001",
        "applicationId": "app-1",
        "callId": "c-86d5e1b0",
        "callUrl": "https://voice.bandwidth.com/api/v2/accounts/9900001/calls/c-86d5e1b0",
        "direction": "inbound",
        "from": "+15550100",
        "to": "+15550199",
        "mediaStream": {
            "id": "s-1f0e2d3c",
            "name": "bot",
            "destination": "wss://gw.example.com/stream/bw-bot",
            "tracks": ["inbound"],
            "startTime": "2026-01-05T10:00:00.000Z",
        },
    }
    body.update(fields)
    return body


def test_media_stream_webhooks() -> None:
    started = parse_status(StatusRequest(webhook("mediaStreamStarted"), {}, {}))
    assert started is not None
    assert (started.provider, started.state, started.call_id) == ("bandwidth", "mediaStreamStarted", "c-86d5e1b0")
    assert (started.stream_id, started.name, started.account_id) == ("s-1f0e2d3c", "bot", "9900001")
    assert started.control_id == "bw-bot"  # the destination URL's route key
    assert started.provider_ts == "2026-01-05T10:00:00.000Z"
    stopped = parse_status(
        StatusRequest(webhook("mediaStreamStopped", cause="connection-error", errorMessage="reset by peer"), {}, {})
    )
    assert stopped is not None and stopped.extra == {"cause": "connection-error", "error": "reset by peer"}
    rejected = parse_status(StatusRequest(webhook("mediaStreamRejected", mediaStream={"name": "bot"}), {}, {}))
    assert rejected is not None and rejected.control_id == "bot" and rejected.stream_id == ""


@pytest.mark.parametrize(
    "request_",
    [
        StatusRequest(None, {"StreamEvent": "stream-started", "CallSid": "CA1"}, {}),
        StatusRequest({"event_type": "calling.call.stream"}, {}, {}),
        StatusRequest({"data": {"event_type": "streaming.started"}}, {}, {}),
        StatusRequest(None, {"Event": "StartStream"}, {}),
    ],
    ids=["cxml", "swml", "telnyx", "plivo"],
)
def test_other_providers_callbacks_are_not_claimed(request_: StatusRequest) -> None:
    assert parse_status(request_) is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (webhook("answer"), "unsupported eventType"),
        (webhook("mediaStreamStarted", callId=""), "callId missing"),
        (webhook("mediaStreamStarted", callId=None), "callId missing"),
        (webhook("disconnect"), "unsupported eventType"),
    ],
)
def test_bandwidth_shaped_webhooks_that_do_not_validate(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(StatusError, match=reason):
        parse_status(StatusRequest(body, {}, {}))

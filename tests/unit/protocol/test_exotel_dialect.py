"""The Exotel dialect (docs/protocols.md sections 7 and 12.6): every message kind and the
back-channel's 320-byte rule, as pure table tests."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import CloseCode, RemoteProtocolError
from gateway.protocol.dialects.exotel import CHUNK, MAX_MESSAGE, ExotelDialect, decode
from gateway.protocol.events import Connected, Dtmf, Ignored, Mark, Media, Start, Stop
from gateway.protocol.media import Codec
from gateway.protocol.playback import PlayAudio, PlayCommand

FIXTURES = Path(__file__).parents[2] / "fixtures"
SID = "b7e2c1d0a9f84e3d2c1b0a9f8e7d6c5b"


def start(media_format: Any = None, **body: Any) -> str:
    start: dict[str, Any] = {
        "stream_sid": SID,
        "call_sid": "call-1",
        "account_sid": "acme1",
        "custom_parameters": {"tenant": "acme"},
        "media_format": media_format or {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"},
    }
    start.update(body)
    return json.dumps(
        {
            "event": "start",
            "sequence_number": 1,
            "stream_sid": SID,
            "start": {k: v for k, v in start.items() if v is not None},
        }
    )


def started(media_format: Any = None) -> ExotelDialect:
    dialect = ExotelDialect()
    assert isinstance(dialect.text(start(media_format)), Start)
    return dialect


def sent(frames: tuple[Any, ...]) -> list[dict[str, Any]]:
    return [json.loads(frame.data) for frame in frames]


def audio_of(messages: list[dict[str, Any]]) -> list[bytes]:
    return [base64.b64decode(m["media"]["payload"]) for m in messages if m["event"] == "media"]


def test_recorded_session_decodes() -> None:
    events = [decode(line) for line in (FIXTURES / "exotel_l16_8k.jsonl").read_text().splitlines()]
    assert [type(e) for e in events] == [Connected, Start] + [Media] * 5 + [Dtmf, Mark, Stop]
    first = events[1]
    assert isinstance(first, Start)
    assert (first.provider, first.stream_id, first.call_id, first.account_id) == (
        "exotel",
        SID,
        "e1c4b7a0d3f62e5d8c1b4a7f0e3d6c9b",
        "acme1",
    )
    assert first.codec == Codec("L16", 8000) and first.custom_parameters == {"tenant": "acme"}
    frames = [e for e in events if isinstance(e, Media)]
    assert all(len(e.payload) == 1600 and e.track == "inbound" for e in frames)  # 100 ms kept whole
    assert [(e.chunk, e.timestamp) for e in frames] == [(c, c * 100) for c in range(1, 6)]
    assert events[7] == Dtmf(digit="5", duration_ms=260, sequence=7)
    assert events[8] == Mark(name="reply-1", sequence=8)
    assert events[9] == Stop(sequence=9)


def test_extended_setup_names_each_frames_track() -> None:
    events = [decode(line) for line in (FIXTURES / "exotel_l16_16k_both.jsonl").read_text().splitlines()]
    first = events[1]
    assert isinstance(first, Start) and first.codec == Codec("L16", 16000) and first.custom_parameters == {}
    assert [e.track for e in events if isinstance(e, Media)] == ["inbound", "outbound"] * 3


@pytest.mark.parametrize(
    ("media_format", "codec"),
    [
        ({"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}, Codec("L16", 8000)),
        ({"encoding": "audio/x-raw", "sample_rate": 16000, "bit_rate": 16}, Codec("L16", 16000)),
        ({"encoding": "audio/x-raw", "sample_rate": "24000"}, Codec("L16", 24000)),
        ({"encoding": "audio/x-mulaw", "sample_rate": "8000"}, Codec("PCMU", 8000)),
        ({"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "8"}, Codec("RAW", 8000)),
    ],
)
def test_media_formats(media_format: dict[str, Any], codec: Codec) -> None:
    event = decode(start(media_format))
    assert isinstance(event, Start) and event.codec == codec


def test_start_without_media_format_is_exotels_default() -> None:
    raw = json.loads(start())
    del raw["start"]["media_format"]
    event = decode(json.dumps(raw))
    assert isinstance(event, Start) and event.codec == Codec("L16", 8000)


def test_stream_sid_only_at_top_level_and_unknown_events() -> None:
    event = decode(start(stream_sid=None))
    assert isinstance(event, Start) and event.stream_id == SID
    assert decode('{"event":"clear_ack","stream_sid":"s"}') == Ignored(kind="unknown_event")
    assert decode('{"event":"stop","stream_sid":"s"}') == Stop()


@pytest.mark.parametrize(
    "frame",
    [
        "{]",
        "null",
        '{"event": ["media"]}',
        '{"event":"media","stream_sid":"s"}',
        '{"event":"media","media":{"payload":"*"}}',
        '{"event":"media","media":{"track":"both","payload":""}}',
        '{"event":"start","stream_sid":"s","start":{}}',
        '{"event":"start","start":{"call_sid":"c"}}',
        '{"event":"start","stream_sid":"s","start":{"call_sid":"c","media_format":{"sample_rate":"fast"}}}',
        '{"event":"dtmf","dtmf":{"duration":1}}',
        '{"event":"dtmf","dtmf":{"digit":"1","duration":"-5"}}',
        '{"event":"mark","mark":{}}',
        '{"event":"start","stream_sid":"s","start":{"call_sid":"c","custom_parameters":'
        + "{" * 3000
        + "}" * 3000
        + "}}",
    ],
)
def test_malformed_frames_close_1007(frame: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        ExotelDialect().text(frame)
    assert info.value.reason == "malformed"
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD


def test_binary_frames_are_refused_1003() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        ExotelDialect().binary(b"\x00")
    assert info.value.close_code == CloseCode.UNSUPPORTED_DATA


# -- back-channel ---------------------------------------------------------------------------------


def test_audio_goes_out_in_multiples_of_320_and_the_rest_waits() -> None:
    dialect = started()
    first = sent(dialect.encode(SID, PlayAudio(b"\x01" * 1000)))
    assert first == [
        {"event": "media", "stream_sid": SID, "media": {"payload": base64.b64encode(b"\x01" * 960).decode()}}
    ]
    assert dialect.encode(SID, PlayAudio(b"\x02" * 100)) == ()  # 40 + 100 bytes: not 320 yet
    second = audio_of(sent(dialect.encode(SID, PlayAudio(b"\x03" * 500))))
    assert second == [b"\x01" * 40 + b"\x02" * 100 + b"\x03" * 500]  # 640: in order, nothing lost
    assert dialect.encode(SID, PlayAudio(b"")) == ()


def test_a_mark_follows_all_the_audio_padded_with_silence() -> None:
    dialect = started()
    messages = sent(dialect.encode(SID, PlayAudio(b"\x05" * 400)))
    messages += sent(dialect.encode(SID, PlayCommand("mark", "reply-1")))
    assert [m["event"] for m in messages] == ["media", "media", "mark"]
    assert audio_of(messages) == [b"\x05" * 320, b"\x05" * 80 + b"\x00" * 240]  # L16 silence
    assert messages[-1] == {"event": "mark", "stream_sid": SID, "mark": {"name": "reply-1"}}
    assert sent(dialect.encode(SID, PlayCommand("mark", "again"))) == [
        {"event": "mark", "stream_sid": SID, "mark": {"name": "again"}}
    ]


def test_mulaw_streams_pad_with_mulaw_silence() -> None:
    dialect = started({"encoding": "audio/x-mulaw", "sample_rate": "8000"})
    dialect.encode(SID, PlayAudio(b"\x10" * 10))
    assert audio_of(sent(dialect.encode(SID, PlayCommand("mark", "m")))) == [b"\x10" * 10 + b"\xff" * 310]


def test_clear_drops_the_rest_and_dtmf_is_not_supported() -> None:
    dialect = started()
    dialect.encode(SID, PlayAudio(b"\x01" * 100))
    (clear,) = dialect.encode(SID, PlayCommand("clear"))
    assert json.loads(clear.data) == {"event": "clear", "stream_sid": SID} and clear.clears
    assert audio_of(sent(dialect.encode(SID, PlayAudio(b"\x02" * 320)))) == [b"\x02" * 320]
    assert dialect.encode(SID, PlayCommand("dtmf", "1")) is None
    assert dialect.close() == ()


def test_long_audio_is_split_under_exotels_message_limit() -> None:
    dialect = started()
    audio = bytes(range(256)) * 1000  # 256000 bytes: two full messages and a 51200-byte one
    chunks = audio_of(sent(dialect.encode(SID, PlayAudio(audio))))
    assert [len(c) for c in chunks] == [MAX_MESSAGE, MAX_MESSAGE, 51200]
    assert all(len(c) % CHUNK == 0 for c in chunks)
    assert b"".join(chunks) == audio

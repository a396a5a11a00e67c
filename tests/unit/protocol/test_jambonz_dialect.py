"""The jambonz ``listen`` dialect (docs/protocols.md sections 8 and 12.7) as table tests, sans IO."""

from __future__ import annotations

import base64
import gc
import json
import os
import struct
import sys
from collections.abc import Callable
from itertools import count
from typing import Any

import pytest

from gateway.errors import CloseCode, RemoteProtocolError
from gateway.protocol.dialects import DIALECTS, SUBPROTOCOLS, create
from gateway.protocol.dialects.base import Outgoing, as_events
from gateway.protocol.dialects.detect import detect
from gateway.protocol.dialects.jambonz import MAX_MARKS, JambonzDialect, split_stereo
from gateway.protocol.events import Dtmf, Ignored, Mark, Media, Start
from gateway.protocol.media import Codec
from gateway.protocol.playback import PlayAudio, PlayCommand
from tests.replay import fixture_names, load, replay

CALL_SID = "8f3e2a52-6a8b-4c0e-9d2f-1b7c5e9a0d31"
PLAY_DONE = '{"type":"playDone"}'


def _ids() -> Callable[[], str]:
    numbers = count(1)
    return lambda: f"stream-{next(numbers)}"


def _opening(**fields: Any) -> str:
    message: dict[str, Any] = {"callSid": CALL_SID, "sampleRate": 8000, "mixType": "mono"}
    message.update(fields)
    return json.dumps({k: v for k, v in message.items() if v is not None})


def _started(mix: str = "mono", rate: int = 8000) -> JambonzDialect:
    dialect = JambonzDialect(_ids())
    assert isinstance(dialect.text(_opening(mixType=mix, sampleRate=rate)), Start)
    return dialect


def _refused(call: Callable[[], object], reason: str, code: CloseCode) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        call()
    assert (info.value.reason, info.value.close_code) == (reason, code), info.value.message
    assert len(info.value.close_message.encode()) <= 123


def _events(decoded: Any) -> list[Any]:
    return list(as_events(decoded))


# -- recorded sessions --------------------------------------------------------------------------


@pytest.mark.parametrize("name", fixture_names("jambonz_"))
def test_recorded_sessions_decode_and_encode(name: str) -> None:
    run = replay(JambonzDialect(_ids()), load(name))
    assert run.sent == run.expected
    assert type(run.events[0]) is Start
    assert all(not o.binary and o.paced_ms == 0 for o in run.outgoing)


def test_recorded_stereo_session() -> None:
    run = replay(JambonzDialect(_ids()), load("jambonz_stereo_8k"))
    start, *rest = run.events
    assert start == Start(
        stream_id="stream-1",
        call_id=CALL_SID,
        account_id="bb845d4b-83a9-4cde-a6e9-50f3743bab3f",
        tracks=("inbound", "outbound"),
        codec=Codec("L16", 8000),
        custom_parameters={
            "accountSid": "bb845d4b-83a9-4cde-a6e9-50f3743bab3f",
            "applicationSid": "0dddaabf-0a30-43e3-84e8-426873b1a78b",
            "from": "+15550100",
            "to": "+15550199",
            "direction": "inbound",
            "callId": "a1b2c3d4@10.0.0.5",
            "tenant": "acme",
        },
        provider="jambonz",
    )
    one, two, minus_four, five, six = (struct.pack("<h", v) * 160 for v in (1, 2, -4, 5, 6))
    assert rest == [
        Media(payload=one, track="inbound"),
        Media(payload=two, track="outbound"),
        Media(payload=struct.pack("<h", 3) * 160, track="inbound"),
        Media(payload=minus_four, track="outbound"),
        Dtmf(digit="1", duration_ms=160),  # 1280 samples at 8 kHz
        Media(payload=five, track="inbound"),
        Media(payload=six, track="outbound"),
        Mark(name="greeting-done"),  # released by the playDone of the play before it
    ]


def test_recorded_mono_session() -> None:
    run = replay(JambonzDialect(_ids()), load("jambonz_mono_16k"))
    start, *rest = run.events
    assert isinstance(start, Start)
    assert (start.tracks, start.codec) == (("inbound",), Codec("L16", 16000))
    assert start.custom_parameters["customer"] == '{"tier":"gold","id":42}'
    assert start.custom_parameters["control_id"] == "bot-7"
    assert rest == [
        Media(payload=b"\x11\x00" * 320, track="inbound"),
        Mark(name="nothing-queued"),  # nothing was playing: out with the next frame from jambonz
        Media(payload=b"\x22\x00" * 320, track="inbound"),
        Dtmf(digit="#", duration_ms=250),
    ]
    assert run.sent == []  # a mark and a dtmf: nothing on the wire


# -- the opening frame --------------------------------------------------------------------------


def test_detected_registered_and_subprotocols() -> None:
    assert detect(_opening()) == "jambonz"
    assert isinstance(create("jambonz", forced=False), JambonzDialect)
    assert isinstance(DIALECTS["jambonz"](), JambonzDialect)
    assert SUBPROTOCOLS["audio.jambonz.org"] == SUBPROTOCOLS["audio.drachtio.org"] == "jambonz"


@pytest.mark.parametrize(
    ("mix", "tracks"),
    [("mono", ("inbound",)), ("mixed", ("inbound",)), ("stereo", ("inbound", "outbound")), (None, ("inbound",))],
)
@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000, 64000, "16000", None])
def test_mix_types_and_rates(mix: str | None, tracks: tuple[str, ...], rate: int | str | None) -> None:
    start = JambonzDialect(_ids()).text(_opening(mixType=mix, sampleRate=rate))
    assert isinstance(start, Start)
    assert start.tracks == tracks
    assert start.codec == Codec("L16", int(rate or 8000))  # jambonz's own defaults: 8000, mono


def test_fields_other_than_the_format_are_custom_parameters() -> None:
    start = JambonzDialect(_ids()).text(
        _opening(**{"from": "+1555", "sip": {"headers": {"X-A": "1"}}, "count": 3, "ok": False})
    )
    assert isinstance(start, Start)
    assert start.custom_parameters == {"from": "+1555", "sip": '{"headers":{"X-A":"1"}}', "count": "3", "ok": "false"}
    assert start.account_id == ""


@pytest.mark.parametrize("rate", [44100, 0, -8000, "fast", 8000.5, True])
def test_unsupported_rates_close_1003(rate: Any) -> None:
    dialect = JambonzDialect(_ids())
    _refused(lambda: dialect.text(_opening(sampleRate=rate)), "unsupported_format", CloseCode.UNSUPPORTED_DATA)


@pytest.mark.parametrize("mix", ["quad", 2, ""])
def test_unsupported_mix_types_close_1003(mix: Any) -> None:
    dialect = JambonzDialect(_ids())
    _refused(lambda: dialect.text(_opening(mixType=mix)), "unsupported_format", CloseCode.UNSUPPORTED_DATA)


@pytest.mark.parametrize(
    "frame",
    [_opening(callSid=None), _opening(callSid=""), _opening(callSid=7), "not json", "[1]", "[" * 5000 + "]" * 5000],
)
def test_malformed_opening_frames_close_1007(frame: str) -> None:
    dialect = JambonzDialect(_ids())
    _refused(lambda: dialect.text(frame), "malformed", CloseCode.INVALID_PAYLOAD)


def test_second_opening_frame_is_a_duplicate_start() -> None:
    dialect = _started()
    _refused(lambda: dialect.text(_opening()), "duplicate_start", CloseCode.POLICY_VIOLATION)


# -- binary audio -------------------------------------------------------------------------------


def test_mono_frames_are_media_as_received() -> None:
    frame = os.urandom(320)
    event = _started().binary(frame)
    assert event == Media(payload=frame, track="inbound", timestamp=None)
    assert getattr(event, "payload", None) is frame  # not copied


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_stereo_frames_are_split_exactly(rate: int) -> None:
    samples = rate // 50
    left = [(i * 37 - 20000) % 65536 - 32768 for i in range(samples)]
    right = [(i * 91 + 12345) % 65536 - 32768 for i in range(samples)]
    interleaved = struct.pack(f"<{2 * samples}h", *(v for pair in zip(left, right, strict=True) for v in pair))
    events = _events(_started("stereo", rate).binary(interleaved))
    assert events == [
        Media(payload=struct.pack(f"<{samples}h", *left), track="inbound"),
        Media(payload=struct.pack(f"<{samples}h", *right), track="outbound"),
    ]


def test_split_stereo_keeps_byte_order_and_every_byte() -> None:
    frame = os.urandom(4 * 160)
    left, right = split_stereo(frame)
    assert len(left) == len(right) == 320
    rebuilt = b"".join(left[i : i + 2] + right[i : i + 2] for i in range(0, 320, 2))
    assert rebuilt == frame


def test_binary_before_the_opening_frame_is_media_before_start() -> None:
    _refused(lambda: JambonzDialect(_ids()).binary(b"\x00" * 320), "media_before_start", CloseCode.POLICY_VIOLATION)


@pytest.mark.parametrize(("mix", "size"), [("mono", 321), ("mono", 1), ("stereo", 642), ("stereo", 2), ("stereo", 3)])
def test_partial_samples_are_malformed(mix: str, size: int) -> None:
    dialect = _started(mix)
    _refused(lambda: dialect.binary(b"\x00" * size), "malformed", CloseCode.INVALID_PAYLOAD)


@pytest.mark.parametrize("mix", ["mono", "stereo"])
def test_empty_binary_frame_is_ignored(mix: str) -> None:
    assert _events(_started(mix).binary(b"")) == [Ignored(kind="empty_frame")]


# -- text events --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "events"),
    [
        ({"event": "dtmf", "dtmf": "5", "duration": 1600}, [Dtmf(digit="5", duration_ms=200)]),
        ({"event": "dtmf", "dtmf": "*"}, [Dtmf(digit="*")]),
        ({"event": "dtmf", "dtmf": 7, "duration": "800"}, [Dtmf(digit="7", duration_ms=100)]),
        ({"type": "playDone"}, []),  # nothing was played: nothing to release
        ({"type": "transcription", "data": {}}, [Ignored(kind="unknown_event")]),
        ({"event": "later", "x": 1}, [Ignored(kind="unknown_event")]),
    ],
)
def test_text_events(message: dict[str, Any], events: list[Any]) -> None:
    assert _events(_started().text(json.dumps(message))) == events


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "{}",
        '{"event":"dtmf"}',
        '{"event":"dtmf","dtmf":""}',
        '{"event":"dtmf","dtmf":"1","duration":-1}',
        '{"event":5}',
        '{"type":"playDone","callSid":[' + "[" * 5000 + "]" * 5000 + "]}",
    ],
)
def test_malformed_text_closes_1007(frame: str) -> None:
    dialect = _started()
    _refused(lambda: dialect.text(frame), "malformed", CloseCode.INVALID_PAYLOAD)


def test_dtmf_before_the_opening_frame_reaches_the_session() -> None:
    # The session refuses it (1008, event before start); the dialect does not guess.
    assert JambonzDialect(_ids()).text('{"event":"dtmf","dtmf":"1"}') == Dtmf(digit="1")


# -- the back-channel and marks -----------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 24000])
def test_audio_is_play_audio_at_the_stream_rate(rate: int) -> None:
    audio = os.urandom(777)
    (out,) = _started("stereo", rate).encode("s", PlayAudio(audio))
    assert out == Outgoing(out.data)  # text, sent at once, clears nothing
    message = json.loads(out.data)
    assert message == {
        "type": "playAudio",
        "data": {"audioContent": base64.b64encode(audio).decode(), "audioContentType": "raw", "sampleRate": str(rate)},
    }


def test_clear_is_kill_audio_and_dtmf_is_unsupported() -> None:
    dialect = _started()
    assert dialect.encode("s", PlayCommand("clear")) == (Outgoing(b'{"type":"killAudio"}', clears=True),)
    assert dialect.encode("s", PlayCommand("dtmf", "5")) is None
    assert dialect.encode("s", PlayAudio(b"")) == ()


def test_marks_wait_for_the_play_done_of_the_audio_before_them() -> None:
    dialect = _started()
    frame = b"\x00" * 320
    for name in ("a", "b"):
        dialect.encode("s", PlayAudio(b"\x01\x00" * 100))
        assert dialect.encode("s", PlayCommand("mark", name)) == ()
    dialect.encode("s", PlayAudio(b"\x02\x00" * 100))
    dialect.encode("s", PlayCommand("mark", "c1"))
    dialect.encode("s", PlayCommand("mark", "c2"))
    assert _events(dialect.binary(frame)) == [Media(payload=frame, track="inbound")]  # nothing played yet
    assert _events(dialect.text(PLAY_DONE)) == [Mark(name="a")]
    assert _events(dialect.text(PLAY_DONE)) == [Mark(name="b")]
    assert _events(dialect.text(PLAY_DONE)) == [Mark(name="c1"), Mark(name="c2")]
    assert _events(dialect.text(PLAY_DONE)) == []  # an extra playDone releases nothing later
    dialect.encode("s", PlayAudio(b"\x03\x00"))
    dialect.encode("s", PlayCommand("mark", "d"))
    assert _events(dialect.text(PLAY_DONE)) == [Mark(name="d")]


def test_a_mark_with_nothing_playing_goes_out_with_the_next_frame() -> None:
    dialect = _started("stereo")
    dialect.encode("s", PlayCommand("mark", "now"))
    frame = b"\x01\x00\x02\x00" * 160
    assert _events(dialect.binary(frame)) == [
        Mark(name="now"),
        Media(payload=b"\x01\x00" * 160, track="inbound"),
        Media(payload=b"\x02\x00" * 160, track="outbound"),
    ]
    dialect.encode("s", PlayCommand("mark", "then"))
    assert _events(dialect.text('{"event":"dtmf","dtmf":"3"}')) == [Mark(name="then"), Dtmf(digit="3")]
    assert _events(dialect.binary(frame))[0] == Media(payload=b"\x01\x00" * 160, track="inbound")


def test_clear_releases_waiting_marks_as_flushed() -> None:
    dialect = _started()
    dialect.encode("s", PlayAudio(b"\x01\x00" * 100))
    dialect.encode("s", PlayCommand("mark", "cut-1"))
    dialect.encode("s", PlayCommand("mark", "cut-2"))
    dialect.encode("s", PlayCommand("clear"))
    assert _events(dialect.binary(b"\x00\x00")) == [Mark("cut-1"), Mark("cut-2"), Media(payload=b"\x00\x00")]
    # the killed play still answers with its playDone: it counts, so the next mark waits for its own
    dialect.encode("s", PlayAudio(b"\x02\x00"))
    dialect.encode("s", PlayCommand("mark", "after"))
    assert _events(dialect.text(PLAY_DONE)) == []
    assert _events(dialect.text(PLAY_DONE)) == [Mark("after")]


def test_close_returns_ready_marks_only() -> None:
    dialect = _started()
    dialect.encode("s", PlayCommand("mark", "ready"))
    dialect.encode("s", PlayAudio(b"\x01\x00"))
    dialect.encode("s", PlayCommand("mark", "never-played"))
    assert _events(dialect.close()) == [Mark("ready")]
    assert _events(dialect.close()) == []


def test_waiting_marks_are_bounded() -> None:
    dialect = _started()
    dialect.encode("s", PlayAudio(b"\x01\x00"))
    for n in range(MAX_MARKS):
        dialect.encode("s", PlayCommand("mark", f"m{n}"))
    with pytest.raises(RemoteProtocolError) as info:
        dialect.encode("s", PlayCommand("mark", "one-too-many"))
    assert info.value.reason == "bad_playback"
    assert len(_events(dialect.text(PLAY_DONE))) == MAX_MARKS


def test_mono_binary_path_allocates_only_the_event() -> None:
    binary = _started("mono", 16000).binary
    frame = bytes(640)
    kept: list[object] = [None] * 1000
    gc.disable()
    try:
        before = sys.getallocatedblocks()
        for i in range(1000):
            kept[i] = binary(frame)
        allocated = sys.getallocatedblocks() - before
    finally:
        gc.enable()
    assert allocated < 1100, allocated  # one Media per frame, nothing else kept

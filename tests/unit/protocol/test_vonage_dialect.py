"""The Vonage dialect (docs/protocols.md sections 4 and 12.3) as table tests, sans IO."""

from __future__ import annotations

import gc
import json
import sys
from collections.abc import Callable
from itertools import count
from typing import Any

import pytest

from gateway.errors import CloseCode, RemoteProtocolError
from gateway.protocol.dialects import DIALECTS, create
from gateway.protocol.dialects.base import Outgoing, as_events
from gateway.protocol.dialects.detect import detect
from gateway.protocol.dialects.vonage import VonageDialect, l16_rate
from gateway.protocol.events import Dtmf, Ignored, Mark, Media, Start
from gateway.protocol.media import Codec
from gateway.protocol.playback import PlayAudio, PlayCommand
from tests.replay import fixture_names, load, replay


def _ids() -> Callable[[], str]:
    numbers = count(1)
    return lambda: f"stream-{next(numbers)}"


def _connected(**headers: Any) -> str:
    message: dict[str, Any] = {"event": "websocket:connected", "content-type": "audio/l16;rate=16000"}
    message.update(headers)
    return json.dumps({k: v for k, v in message.items() if v is not None})


def _started(rate: int = 16000, **headers: Any) -> VonageDialect:
    dialect = VonageDialect(_ids())
    start = dialect.text(_connected(**{"content-type": f"audio/l16;rate={rate}"}, **headers))
    assert isinstance(start, Start)
    return dialect


def _refused(call: Callable[[], object], reason: str, code: CloseCode) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        call()
    assert (info.value.reason, info.value.close_code) == (reason, code), info.value.message
    assert len(info.value.close_message.encode()) <= 123


# -- the recorded session -----------------------------------------------------------------------


@pytest.mark.parametrize("name", fixture_names("vonage_"))
def test_recorded_session_decodes_and_encodes(name: str) -> None:
    run = replay(VonageDialect(_ids()), load(name))
    assert run.sent == run.expected  # every back-channel frame, byte for byte, in order
    kinds = [type(e) for e in run.events]
    assert kinds[0] is Start and Media in kinds
    assert all(len(o.data) in (320, 640, 960) for o in run.outgoing if o.binary)


def test_recorded_16k_session_events() -> None:
    run = replay(VonageDialect(_ids()), load("vonage_l16_16k"))
    start, *rest = run.events
    assert start == Start(
        stream_id="stream-1",
        call_id="stream-1",  # no call_id, uuid or conversation_uuid header: the stream id
        account_id="",
        tracks=("inbound",),
        codec=Codec("L16", 16000),
        custom_parameters={"caller": "447700900123", "lang": "en-GB"},
        provider="vonage",
    )
    assert rest == [
        Media(payload=b"\x01\x00" * 320, track="inbound"),
        Media(payload=b"\x02\x00" * 320, track="inbound"),
        Media(payload=b"\x03\x00" * 320, track="inbound"),
        Mark(name="r-1"),
        Dtmf(digit="5", duration_ms=260),
    ]  # websocket:cleared and the close add nothing
    binary = [o for o in run.outgoing if o.binary]
    assert binary and all(o.paced_ms == 20 and not o.clears for o in binary)
    notify = next(o for o in run.outgoing if not o.binary and b"notify" in o.data)
    assert notify.paced_ms == 0  # not paced itself: it waits in the pacer behind the audio
    assert run.outgoing[-1] == Outgoing(b'{"action":"clear"}', clears=True)


# -- the opening frame --------------------------------------------------------------------------


def test_detected_and_registered() -> None:
    assert detect(_connected()) == "vonage"
    assert isinstance(create("vonage", forced=True), VonageDialect)
    assert isinstance(DIALECTS["vonage"](), VonageDialect)
    assert VonageDialect.name == "vonage"


@pytest.mark.parametrize(
    ("headers", "call_id"),
    [
        ({"call_id": "c-42", "uuid": "u-1", "conversation_uuid": "CON-1"}, "c-42"),
        ({"uuid": "u-1", "conversation_uuid": "CON-1"}, "u-1"),
        ({"conversation_uuid": "CON-1"}, "CON-1"),
        ({"call_id": "", "uuid": "u-1"}, "u-1"),  # empty is absent
        ({"call_id": 42}, "42"),
        ({}, "stream-1"),
    ],
)
def test_call_id_is_the_first_header_present(headers: dict[str, Any], call_id: str) -> None:
    start = VonageDialect(_ids()).text(_connected(**headers))
    assert isinstance(start, Start)
    assert (start.call_id, start.stream_id) == (call_id, "stream-1")


def test_headers_become_custom_parameters_json_encoded_when_not_strings() -> None:
    start = VonageDialect(_ids()).text(
        _connected(tenant="acme", n=2, flag=True, nested={"a": [1, 2]}, nothing=None, control_id="bot-1")
    )
    assert isinstance(start, Start)
    assert start.custom_parameters == {
        "tenant": "acme",
        "n": "2",
        "flag": "true",
        "nested": '{"a":[1,2]}',
        "control_id": "bot-1",
    }


def test_stream_ids_are_generated_uuids() -> None:
    first, second = (VonageDialect().text(_connected()) for _ in range(2))
    assert isinstance(first, Start) and isinstance(second, Start)
    assert first.stream_id != second.stream_id and len(first.stream_id) == 36


@pytest.mark.parametrize(
    ("content_type", "rate"),
    [
        ("audio/l16;rate=16000", 16000),
        ("audio/l16;rate=8000", 8000),
        ("audio/l16;rate=24000", 24000),
        ("AUDIO/L16; Rate=8000", 8000),
        ("audio/l16;channels=1;rate=16000", 16000),
    ],
)
def test_content_types(content_type: str, rate: int) -> None:
    assert l16_rate(content_type) == rate
    start = VonageDialect(_ids()).text(_connected(**{"content-type": content_type}))
    assert isinstance(start, Start) and start.codec == Codec("L16", rate)


@pytest.mark.parametrize(
    "content_type", ["audio/l16;rate=44100", "audio/l16", "audio/pcmu;rate=8000", "audio/l16;rate=abc", ""]
)
def test_unsupported_content_types_close_1003(content_type: str) -> None:
    _refused(
        lambda: VonageDialect(_ids()).text(_connected(**{"content-type": content_type})),
        "unsupported_format",
        CloseCode.UNSUPPORTED_DATA,
    )


@pytest.mark.parametrize("content_type", [None, 16000])
def test_missing_content_type_is_malformed(content_type: Any) -> None:
    raw = json.loads(_connected())
    raw["content-type"] = content_type
    _refused(lambda: VonageDialect(_ids()).text(json.dumps(raw)), "malformed", CloseCode.INVALID_PAYLOAD)


def test_second_connected_is_a_duplicate_start() -> None:
    dialect = _started()
    _refused(lambda: dialect.text(_connected()), "duplicate_start", CloseCode.POLICY_VIOLATION)


# -- binary audio -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [320, 640, 960, 2, 100])
def test_binary_frames_are_media_without_timestamp(size: int) -> None:
    frame = bytes(range(256)) * 4
    event = _started().binary(frame[:size])
    assert event == Media(payload=frame[:size], track="inbound", timestamp=None)


def test_binary_payload_is_not_copied() -> None:
    frame = b"\x01\x02" * 320
    event = _started().binary(frame)
    assert getattr(event, "payload", None) is frame


def test_binary_before_connected_is_media_before_start() -> None:
    _refused(lambda: VonageDialect(_ids()).binary(b"\x00" * 640), "media_before_start", CloseCode.POLICY_VIOLATION)


@pytest.mark.parametrize("size", [1, 639, 641])
def test_odd_length_binary_is_malformed(size: int) -> None:
    _refused(lambda: _started().binary(b"\x00" * size), "malformed", CloseCode.INVALID_PAYLOAD)


def test_empty_binary_frame_is_ignored() -> None:
    assert _started().binary(b"") == Ignored(kind="empty_frame")


# -- text events --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "event"),
    [
        ({"event": "websocket:dtmf", "digit": "5", "duration": 260}, Dtmf(digit="5", duration_ms=260)),
        ({"event": "websocket:dtmf", "digit": "#"}, Dtmf(digit="#")),
        ({"event": "websocket:dtmf", "dtmf": "7", "duration": "120"}, Dtmf(digit="7", duration_ms=120)),
        ({"event": "websocket:dtmf", "dtmf": {"digit": "9", "duration": 80}}, Dtmf(digit="9", duration_ms=80)),
        ({"event": "websocket:dtmf", "digit": 3}, Dtmf(digit="3")),
        ({"event": "websocket:notify", "payload": {"name": "reply-1"}}, Mark(name="reply-1")),
        ({"event": "websocket:notify", "payload": {"name": "m", "extra": 1}}, Mark(name="m")),
        ({"event": "websocket:notify", "payload": {"reply_id": "r-1"}}, Ignored(kind="foreign_notify")),
        ({"event": "websocket:notify"}, Ignored(kind="foreign_notify")),
        ({"event": "websocket:error", "reason": "x"}, Ignored(kind="unknown_event")),
    ],
)
def test_text_events(message: dict[str, Any], event: Any) -> None:
    assert _started().text(json.dumps(message)) == event


def test_cleared_is_an_ack_without_event() -> None:
    assert as_events(_started().text('{"event":"websocket:cleared"}')) == ()


def test_events_before_connected_reach_the_session_as_they_are() -> None:
    # The session refuses a dtmf before start (1008); the dialect does not guess.
    dialect = VonageDialect(_ids())
    assert dialect.text('{"event":"websocket:dtmf","digit":"1"}') == Dtmf(digit="1")
    assert dialect.text('{"event":"websocket:later"}') == Ignored(kind="unknown_event")


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        '{"no_event": true}',
        '{"event": 5}',
        '{"event":"websocket:dtmf"}',
        '{"event":"websocket:dtmf","digit":""}',
        '{"event":"websocket:dtmf","digit":"1","duration":-5}',
        '{"event":"websocket:notify","payload":"name"}',
        '{"event":"websocket:notify","payload":' + "[" * 5000 + "]" * 5000 + "}",
    ],
)
def test_malformed_text_closes_1007(frame: str) -> None:
    _refused(lambda: _started().text(frame), "malformed", CloseCode.INVALID_PAYLOAD)


def test_close_holds_nothing() -> None:
    assert as_events(_started().close()) == ()


# -- the back-channel ---------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "frame"), [(8000, 320), (16000, 640), (24000, 960)])
def test_audio_is_cut_into_exact_20ms_frames_with_the_remainder_kept(rate: int, frame: int) -> None:
    dialect = _started(rate)
    audio = bytes(i % 251 for i in range(frame * 7 + 123))
    sent: list[Outgoing] = []
    for piece in (audio[:5], audio[5 : frame + 1], audio[frame + 1 : 4 * frame - 3], audio[4 * frame - 3 :]):
        sent.extend(dialect.encode("s", PlayAudio(piece)))
    assert [len(o.data) for o in sent] == [frame] * 7
    assert all(o.binary and o.paced_ms == 20 and not o.clears for o in sent)
    assert b"".join(o.data for o in sent) == audio[: frame * 7]  # nothing reordered, nothing lost
    mark = dialect.encode("s", PlayCommand("mark", "end"))
    assert [len(o.data) for o in mark[:-1]] == [frame]
    assert mark[0].data == audio[frame * 7 :] + bytes(frame - 123)  # the rest, padded with silence
    assert json.loads(mark[-1].data) == {"action": "notify", "payload": {"name": "end"}}
    assert not mark[-1].binary and mark[-1].paced_ms == 0


def test_small_audio_waits_for_more() -> None:
    dialect = _started(8000)
    assert dialect.encode("s", PlayAudio(b"\x01" * 100)) == ()
    (out,) = dialect.encode("s", PlayAudio(b"\x02" * 220))
    assert out.data == b"\x01" * 100 + b"\x02" * 220


def test_mark_without_remainder_is_just_notify() -> None:
    dialect = _started(8000)
    dialect.encode("s", PlayAudio(b"\x01" * 640))
    (notify,) = dialect.encode("s", PlayCommand("mark", "m-1"))
    assert json.loads(notify.data) == {"action": "notify", "payload": {"name": "m-1"}}


def test_clear_drops_the_remainder() -> None:
    dialect = _started(8000)
    dialect.encode("s", PlayAudio(b"\x01" * 500))
    assert dialect.encode("s", PlayCommand("clear")) == (Outgoing(b'{"action":"clear"}', clears=True),)
    (out,) = dialect.encode("s", PlayAudio(b"\x02" * 320))
    assert out.data == b"\x02" * 320  # nothing of the cleared audio comes back


def test_notify_round_trip_is_the_mark_name() -> None:
    dialect = _started()
    (notify,) = dialect.encode("s", PlayCommand("mark", "greeting / part 2"))
    echo = {"event": "websocket:notify", "payload": json.loads(notify.data)["payload"]}
    assert dialect.text(json.dumps(echo)) == Mark(name="greeting / part 2")


def test_dtmf_is_not_supported() -> None:
    assert _started().encode("s", PlayCommand("dtmf", "5")) is None


def test_nothing_is_encoded_before_the_audio_format_is_known() -> None:
    assert VonageDialect(_ids()).encode("s", PlayAudio(b"\x00" * 640)) == ()


def test_binary_path_allocates_only_the_event() -> None:
    binary = _started().binary
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

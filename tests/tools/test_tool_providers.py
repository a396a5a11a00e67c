"""Every provider writer of the simulator, without a socket: its frames against the documented
examples (docs/protocols.md section 12), the same frames decoded by the gateway's own dialect into
the canonical events, and the back-channel both ways (what the dialect sends, read as the provider
reads it; the provider's echo, decoded by the dialect)."""

from __future__ import annotations

import base64
import io
import json
import re
import wave
from array import array
from typing import Any

import pytest

from gateway.audio import parse_codec, unpack_l16le
from gateway.protocol.dialects import create
from gateway.protocol.dialects.base import Outgoing, as_events
from gateway.protocol.events import Connected, Dtmf, Ignored, InboundEvent, Mark, Media, Reordered, Start, Stop
from gateway.protocol.playback import PlayAudio, PlayCommand
from gateway.tools.providers import (
    PROVIDERS,
    BadBackMessage,
    ClearQueue,
    HangUp,
    ProviderWire,
    QueueAudio,
    QueueMark,
    SendDigits,
    StreamSpec,
)
from gateway.tools.wire import Faults, FramePlan, MediaFrame, Track, make_signal

EPOCH_MS = 1_767_225_600_000
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ALL = tuple(PROVIDERS)
TWO_TRACKS = ("signalwire", "twilio", "telnyx", "plivo", "exotel", "bandwidth")
DTMF = tuple(name for name in ALL if PROVIDERS[name].dtmf_supported)
MARKS = tuple(name for name in ALL if name != "bandwidth")


def writer(
    name: str,
    *,
    codec: str | None = None,
    tracks: tuple[Track, ...] = ("inbound",),
    params: dict[str, str] | None = None,
    mix: str = "mono",
) -> ProviderWire:
    cls = PROVIDERS[name]
    spec = StreamSpec(
        cls.new_ids(),
        tracks,
        parse_codec(codec or cls.default_codec),
        params if params is not None else {"tenant": "acme"},
        mix,  # type: ignore[arg-type]
        epoch_ms=EPOCH_MS,
    )
    return cls(spec)


def frames(wire: ProviderWire, ticks: int, faults: Faults | None = None) -> list[MediaFrame]:
    codec = wire.stream.codec
    plan = FramePlan(
        wire.lane_sources(lambda track: make_signal("tone", codec, 0, track)),
        faults or Faults(),
        "test",
        sequence=wire.next_sequence,
        frame_ms=wire.frame_ms,
        first_timestamp=wire.first_timestamp,
    )
    out = [frame for _ in range(ticks) for frame in plan.tick()]
    return out + plan.flush()


def opening(wire: ProviderWire) -> list[str]:
    connected = wire.connected()
    return ([connected] if connected is not None else []) + [wire.start()]


def decode_all(name: str, data: list[str | bytes]) -> list[InboundEvent]:
    dialect = create(name, forced=True)
    events: list[InboundEvent] = []
    for item in data:
        events.extend(as_events(dialect.binary(item) if isinstance(item, bytes) else dialect.text(item)))
    events.extend(as_events(dialect.close()))
    return events


def text(frames_out: tuple[Outgoing, ...] | None) -> list[str | bytes]:
    """A dialect's frames as sent (None: the provider has no such message, nothing is sent)."""
    return [frame.data if frame.binary else frame.data.decode() for frame in frames_out or ()]


# -- the documented examples -----------------------------------------------------------------


def test_telnyx_frames_are_the_documented_shapes() -> None:
    wire = writer("telnyx", codec="PCMA")
    connected, start = opening(wire)
    assert json.loads(connected) == {"event": "connected", "version": "1.0.0"}
    message = json.loads(start)
    assert list(message) == ["event", "sequence_number", "start", "stream_id"]
    assert message["sequence_number"] == "1"
    body = message["start"]
    assert list(body) == [
        "user_id",
        "call_control_id",
        "call_session_id",
        "from",
        "to",
        "tags",
        "client_state",
        "custom_parameters",
        "media_format",
    ]
    assert body["call_control_id"].startswith("v3:")
    assert body["media_format"] == {"encoding": "PCMA", "sample_rate": 8000, "channels": 1}
    assert body["custom_parameters"] == {"tenant": "acme"}
    first, second = (json.loads(wire.media(f)) for f in frames(wire, 2))
    assert list(first) == ["event", "sequence_number", "media", "stream_id"]
    assert list(first["media"]) == ["track", "chunk", "timestamp", "payload"]
    assert (first["sequence_number"], first["media"]["chunk"], first["media"]["timestamp"]) == ("2", "1", "20")
    assert (second["sequence_number"], second["media"]["chunk"], second["media"]["timestamp"]) == ("3", "2", "40")
    assert len(base64.b64decode(first["media"]["payload"])) == 160
    dtmf = json.loads(wire.dtmf("3", 120, 1250))
    assert list(dtmf) == ["event", "stream_id", "occurred_at", "sequence_number", "dtmf"]
    assert dtmf["occurred_at"] == "2026-01-01T00:00:01.250Z" and dtmf["dtmf"] == {"digit": "3"}
    assert json.loads(wire.mark_echo("reply-1")) == {
        "event": "mark",
        "stream_id": wire.stream.ids.stream_id,
        "sequence_number": "5",
        "mark": {"name": "reply-1"},
    }
    stop = json.loads(wire.stop() or "")
    assert stop["stop"] == {"user_id": wire.stream.ids.account_id, "call_control_id": wire.stream.ids.call_id}
    assert stop["sequence_number"] == "6"


def test_vonage_frames_are_the_documented_shapes() -> None:
    wire = writer("vonage", codec="L16@8000", params={"tenant": "acme"})
    assert opening(wire) == [
        json.dumps(
            {
                "event": "websocket:connected",
                "content-type": "audio/l16;rate=8000",
                "uuid": wire.stream.ids.call_id,
                "tenant": "acme",
            },
            separators=(",", ":"),
        )
    ]
    media = [wire.media(f) for f in frames(wire, 3)]
    assert all(isinstance(m, bytes) and len(m) == 320 for m in media)
    assert json.loads(wire.dtmf("4", 180, 0)) == {"event": "websocket:dtmf", "digit": "4", "duration": 180}
    assert wire.stop() is None  # Vonage just closes
    assert json.loads(wire.mark_echo('{"name":"reply-1"}')) == {
        "event": "websocket:notify",
        "payload": {"name": "reply-1"},
    }
    assert wire.clear_answer() == '{"event":"websocket:cleared"}'


def test_plivo_frames_are_the_documented_shapes() -> None:
    wire = writer("plivo", codec="PCMU", params={"tenant": "acme", "tier": "gold"})
    assert wire.connected() is None
    (start,) = opening(wire)
    message = json.loads(start)
    assert list(message) == ["event", "sequenceNumber", "start", "extra_headers"]
    assert message["sequenceNumber"] == 1  # numbers, not strings
    assert list(message["start"]) == ["callId", "streamId", "accountId", "tracks", "mediaFormat"]
    assert re.fullmatch(r"MA[0-9A-Z]{18}", message["start"]["accountId"])
    assert message["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000}
    assert message["extra_headers"] == "tenant=acme,tier=gold"
    first = json.loads(wire.media(frames(wire, 1)[0]))
    assert list(first) == ["event", "sequenceNumber", "streamId", "media", "extra_headers"]
    assert list(first["media"]) == ["track", "timestamp", "chunk", "payload"]
    assert first["sequenceNumber"] == 2 and first["media"]["chunk"] == 1
    assert first["media"]["timestamp"] == str(EPOCH_MS + 20)  # epoch milliseconds, as a string
    dtmf = json.loads(wire.dtmf("2", 120, 1400))
    assert dtmf["dtmf"] == {"track": "inbound", "digit": "2", "timestamp": str(EPOCH_MS + 1400)}
    assert json.loads(wire.mark_echo("reply-1")) == {
        "event": "playedStream",
        "sequenceNumber": 4,
        "streamId": wire.stream.ids.stream_id,
        "name": "reply-1",
    }
    assert json.loads(wire.clear_answer() or "") == {
        "event": "clearedAudio",
        "sequenceNumber": 5,
        "streamId": wire.stream.ids.stream_id,
    }
    assert wire.stop() is None


def test_bandwidth_frames_are_the_documented_shapes() -> None:
    wire = writer("bandwidth", tracks=("inbound", "outbound"), params={"tenant": "acme"})
    (start,) = opening(wire)
    message = json.loads(start)
    assert list(message) == ["eventType", "metadata", "streamParams"]
    assert message["eventType"] == "start"
    assert list(message["metadata"]) == ["accountId", "callId", "streamId", "streamName", "tracks"]
    assert message["metadata"]["tracks"] == [
        {"name": "inbound", "mediaFormat": {"encoding": "audio/PCMU", "sampleRate": 8000}},
        {"name": "outbound", "mediaFormat": {"encoding": "audio/PCMU", "sampleRate": 8000}},
    ]
    assert message["streamParams"] == {"tenant": "acme"}
    first, second = (json.loads(wire.media(f)) for f in frames(wire, 1))
    assert list(first) == ["eventType", "track", "payload"]
    assert (first["track"], second["track"]) == ("inbound", "outbound")
    assert json.loads(wire.stop() or "") == {"eventType": "stop", "metadata": message["metadata"]}
    with pytest.raises(ValueError, match="no DTMF"):
        wire.dtmf("1", 100, 0)


def test_exotel_frames_are_the_documented_shapes() -> None:
    wire = writer("exotel")
    connected, start = opening(wire)
    assert connected == '{"event":"connected"}'
    message = json.loads(start)
    assert list(message) == ["event", "sequence_number", "stream_sid", "start"]
    assert message["sequence_number"] == 1
    assert list(message["start"]) == [
        "stream_sid",
        "call_sid",
        "account_sid",
        "from",
        "to",
        "custom_parameters",
        "media_format",
    ]
    assert message["start"]["media_format"] == {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}
    first = json.loads(wire.media(frames(wire, 1)[0]))
    assert list(first) == ["event", "sequence_number", "stream_sid", "media"]
    assert list(first["media"]) == ["chunk", "timestamp", "payload"]  # no track in the base format
    assert (first["media"]["chunk"], first["media"]["timestamp"]) == (1, "100")
    assert len(base64.b64decode(first["media"]["payload"])) == 1600  # 100 ms of L16 at 8 kHz
    both = writer("exotel", codec="L16@16000", tracks=("inbound", "outbound"))
    assert [json.loads(both.media(f))["media"]["track"] for f in frames(both, 1)] == ["inbound", "outbound"]
    stop = json.loads(wire.stop() or "")
    assert stop["stop"]["reason"] == "callended"


def test_jambonz_frames_are_the_documented_shapes() -> None:
    wire = writer("jambonz", tracks=("inbound", "outbound"), mix="stereo")
    assert wire.subprotocols == ("audio.jambonz.org",)
    (first,) = opening(wire)
    message = json.loads(first)
    assert "event" not in message
    assert list(message) == ["callSid", "from", "to", "direction", "accountSid", "sampleRate", "mixType", "tenant"]
    assert (message["sampleRate"], message["mixType"]) == (8000, "stereo")
    (frame,) = frames(wire, 1)
    data = wire.media(frame)
    assert isinstance(data, bytes) and len(data) == 640  # 20 ms, two interleaved channels
    samples = unpack_l16le(data)
    (left_track, left), (right_track, right) = frame.tracks()
    assert (left_track, right_track) == ("inbound", "outbound")
    assert samples[0::2] == unpack_l16le(left) and samples[1::2] == unpack_l16le(right)
    assert samples[0::2] != samples[1::2]  # two different voices, not one copied
    assert json.loads(wire.dtmf("1", 20, 0)) == {"event": "dtmf", "dtmf": "1", "duration": 160}
    assert wire.mark_echo("playAudio#1") == '{"type":"playDone"}'
    assert wire.stop() is None


def test_jambonz_mixed_sums_both_legs_into_one_channel() -> None:
    codec = parse_codec("L16@16000")
    mixed = writer("jambonz", codec="L16@16000", mix="mixed")
    (frame,) = frames(mixed, 1)
    assert frame.tracks() == (("inbound", frame.payload),)
    caller = make_signal("tone", codec, 0, "inbound").read(320)
    other = make_signal("tone", codec, 0, "outbound").read(320)
    expected = [max(-32768, min(32767, a + b)) for a, b in zip(caller, other, strict=True)]
    assert list(unpack_l16le(frame.payload)) == expected


def test_signalwire_and_twilio_keep_their_differences() -> None:
    signalwire, twilio = writer("signalwire"), writer("twilio")
    assert UUID.match(signalwire.stream.ids.stream_id)
    assert re.fullmatch(r"MZ[0-9a-f]{32}", twilio.stream.ids.stream_id)
    sw_dtmf = json.loads(signalwire.dtmf("5", 1500, 0))
    tw_dtmf = json.loads(twilio.dtmf("7", 1500, 0))
    assert sw_dtmf["dtmf"] == {"digit": "5", "duration": 1500}
    assert tw_dtmf["dtmf"] == {"track": "inbound_track", "digit": "7"}
    assert "sequenceNumber" not in json.loads(signalwire.mark_echo("m"))
    assert json.loads(twilio.mark_echo("m"))["sequenceNumber"] == "2"  # after the dtmf's 1
    assert json.loads(signalwire.stop() or "") == {"event": "stop", "sequenceNumber": "2"}


@pytest.mark.parametrize(
    ("name", "codec", "track", "mix", "problem"),
    [
        ("vonage", "PCMU", "inbound", "mono", "L16"),
        ("vonage", "L16@16000", "both", "mono", "track"),
        ("bandwidth", "L16@16000", "inbound", "mono", "PCMU"),
        ("plivo", "L16@24000", "inbound", "mono", "L16/16000"),
        ("exotel", "PCMU", "inbound", "mono", "L16"),
        ("jambonz", "L16@8000", "both", "stereo", "--mix-type"),
        ("twilio", "PCMU", "inbound", "stereo", "jambonz"),
    ],
)
def test_what_a_provider_cannot_send_is_refused(name: str, codec: str, track: str, mix: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        PROVIDERS[name].check(parse_codec(codec), track, mix)  # type: ignore[arg-type]


# -- decoded by the gateway's dialect ---------------------------------------------------------


def _two_tracks(name: str) -> tuple[tuple[Track, ...], str]:
    if name == "jambonz":
        return ("inbound", "outbound"), "stereo"
    if name in TWO_TRACKS:
        return ("inbound", "outbound"), "mono"
    return ("inbound",), "mono"


@pytest.mark.parametrize("name", ALL)
def test_the_gateways_dialect_decodes_every_frame(name: str) -> None:
    tracks, mix = _two_tracks(name)
    wire = writer(name, tracks=tracks, mix=mix, params={"tenant": "acme"})
    sent = frames(wire, 6)
    data: list[str | bytes] = [*opening(wire), *(wire.media(f) for f in sent)]
    if wire.dtmf_supported:
        data.append(wire.dtmf("7", 120, 100))
    stop = wire.stop()
    if stop is not None:
        data.append(stop)
    events = [e for e in decode_all(name, data) if not isinstance(e, Connected)]

    start = events[0]
    assert isinstance(start, Start)
    ids = wire.stream.ids
    assert start.provider == name
    assert start.call_id == ids.call_id
    assert start.stream_id == ids.stream_id or (not ids.stream_id and UUID.match(start.stream_id))
    assert start.account_id == ids.account_id
    if name not in ("telnyx", "exotel"):  # their start names no tracks: each media frame does
        assert start.tracks == tracks
    assert start.codec.label == wire.stream.codec.label
    assert start.custom_parameters.get("tenant") == "acme"
    media = [e for e in events if isinstance(e, Media)]
    for track in tracks:
        expected = [audio for f in sent for t, audio in f.tracks() if t == track]
        assert [m.payload for m in media if m.track == track] == expected
    inbound = [m.timestamp for m in media if m.track == "inbound"]
    if name == "plivo":  # epoch milliseconds, made relative to the first frame
        assert inbound == [20 * n for n in range(6)]
    elif name in ("signalwire", "twilio", "telnyx", "exotel"):
        assert inbound == [f.timestamp for f in sent if f.track == "inbound"]
    else:  # no media clock on the wire: the session counts it from the bytes
        assert inbound == [None] * 6
    if wire.dtmf_supported:
        (dtmf,) = [e for e in events if isinstance(e, Dtmf)]
        assert dtmf.digit == "7"
    assert isinstance(events[-1], Stop) == (stop is not None)
    assert not [e for e in events if isinstance(e, Ignored | Reordered)]


def test_telnyx_style_reordering_is_put_back_in_order_by_the_dialect() -> None:
    wire = writer("telnyx")
    sent = frames(wire, 40, Faults(reorder=0.2))
    chunks = [f.chunk for f in sent]
    assert chunks != sorted(chunks)  # some frames really were swapped on the wire
    events = decode_all("telnyx", [*opening(wire), *(wire.media(f) for f in sent)])
    media = [e for e in events if isinstance(e, Media)]
    assert [m.chunk for m in media] == sorted(chunks)
    assert sum(isinstance(e, Reordered) for e in events) == sum(
        1 for a, b in zip(chunks, chunks[1:], strict=False) if b < a
    )


# -- the back-channel ---------------------------------------------------------------------------


def _started(name: str, codec: str | None = None) -> tuple[ProviderWire, Any, str]:
    """A writer and the gateway dialect that has decoded its opening (the gateway's stream id)."""
    tracks, mix = ("inbound",), "mono"
    wire = writer(name, codec=codec, tracks=tracks, mix=mix)
    dialect = create(name, forced=True)
    stream_id = ""
    for item in opening(wire):
        for event in as_events(dialect.text(item)):
            if isinstance(event, Start):
                stream_id = event.stream_id
    return wire, dialect, stream_id


def _read(wire: ProviderWire, out: tuple[Outgoing, ...] | None) -> list[Any]:
    return [action for item in text(out) for action in wire.read_back(item)]


@pytest.mark.parametrize("name", ALL)
def test_the_dialects_audio_is_played_by_the_provider(name: str) -> None:
    wire, dialect, stream_id = _started(name)
    codec = wire.stream.codec
    audio = codec.silence(codec.sample_rate // 10)  # 100 ms
    actions = _read(wire, dialect.encode(stream_id, PlayAudio(audio)))
    if name == "vonage":  # exactly-20 ms binary frames, nothing left over
        assert [type(a) for a in actions] == [QueueAudio] * 5
    played = [a for a in actions if isinstance(a, QueueAudio)]
    assert sum(len(a.payload) for a in played) == len(audio)
    assert all(a.bytes_per_ms == codec.sample_rate * codec.bytes_per_sample / 1000 for a in played)
    assert [a for a in actions if isinstance(a, QueueMark)] == ([QueueMark("playAudio#1")] if name == "jambonz" else [])


@pytest.mark.parametrize("name", MARKS)
def test_marks_go_out_and_their_echo_comes_back_as_the_consumers_mark(name: str) -> None:
    wire, dialect, stream_id = _started(name)
    codec = wire.stream.codec
    actions = _read(wire, dialect.encode(stream_id, PlayAudio(codec.silence(codec.samples_per_frame))))
    actions += _read(wire, dialect.encode(stream_id, PlayCommand("mark", "greeting-1")))
    marks = [a for a in actions if isinstance(a, QueueMark)]
    assert len(marks) == 1
    echoed: list[InboundEvent] = []
    for mark in marks:
        echoed.extend(as_events(dialect.text(wire.mark_echo(mark.name))))
    echoed.extend(as_events(dialect.close()))  # jambonz releases ready marks with its next frame
    assert [e.name for e in echoed if isinstance(e, Mark)] == ["greeting-1"]


@pytest.mark.parametrize("name", ALL)
def test_clear_empties_the_providers_queue(name: str) -> None:
    wire, dialect, stream_id = _started(name)
    assert _read(wire, dialect.encode(stream_id, PlayCommand("clear"))) == [ClearQueue()]
    answer = wire.clear_answer()
    if answer is not None:  # Vonage's websocket:cleared, Plivo's clearedAudio: nothing for consumers
        assert [e for e in as_events(dialect.text(answer)) if not isinstance(e, Ignored)] == []


def test_dtmf_from_the_server_where_the_provider_takes_it() -> None:
    for name in ("signalwire", "plivo"):
        wire, dialect, stream_id = _started(name)
        assert _read(wire, dialect.encode(stream_id, PlayCommand("dtmf", "12#"))) in (
            [SendDigits("12#")],
            [SendDigits("1"), SendDigits("2"), SendDigits("#")],
        )


def test_what_a_provider_would_refuse() -> None:
    twilio = writer("twilio")
    with pytest.raises(BadBackMessage, match="streamSid"):
        twilio.read_back('{"event":"mark","streamSid":"MZother","mark":{"name":"m"}}')
    with pytest.raises(BadBackMessage, match="binary"):
        twilio.read_back(b"\xff" * 160)
    with pytest.raises(BadBackMessage, match="unknown event"):
        twilio.read_back(json.dumps({"event": "dtmf", "streamSid": twilio.stream.ids.stream_id}))
    exotel = writer("exotel")
    odd = {"event": "media", "stream_sid": exotel.stream.ids.stream_id, "media": {"payload": "AAAA"}}
    with pytest.raises(BadBackMessage, match="multiple of 320"):
        exotel.read_back(json.dumps(odd))
    plivo = writer("plivo", codec="L16@16000")
    wrong_rate = {"event": "playAudio", "media": {"contentType": "audio/x-l16", "sampleRate": 8000, "payload": ""}}
    with pytest.raises(BadBackMessage, match="does not match"):
        plivo.read_back(json.dumps(wrong_rate))
    vonage = writer("vonage", codec="L16@16000")
    (hang_up,) = vonage.read_back(b"\x00" * 320)  # 10 ms at 16 kHz: Vonage drops the socket
    assert isinstance(hang_up, HangUp) and hang_up.abrupt
    assert vonage.read_back(b"\x00" * 640) == (QueueAudio(b"\x00" * 640, 32.0),)


def test_jambonz_plays_wav_and_disconnects() -> None:
    wire = writer("jambonz", codec="L16@16000")
    pcm = array("h", range(800)).tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(pcm)
    content = base64.b64encode(buffer.getvalue()).decode()
    message = {"type": "playAudio", "data": {"audioContent": content, "audioContentType": "wav", "sampleRate": "16000"}}
    audio, mark = wire.read_back(json.dumps(message))
    assert audio == QueueAudio(pcm, 32.0) and mark == QueueMark("playAudio#1")
    assert wire.read_back('{"type":"disconnect"}') == (HangUp("disconnect"),)
    assert wire.read_back(b"\x01\x00" * 10) == (QueueAudio(b"\x01\x00" * 10, 32.0),)


def test_bandwidth_plays_pcmu_and_pcm_at_their_own_rates() -> None:
    wire = writer("bandwidth")
    pcmu = {"eventType": "playAudio", "media": {"contentType": "audio/pcmu", "payload": "/////w=="}}
    assert wire.read_back(json.dumps(pcmu)) == (QueueAudio(b"\xff" * 4, 8.0),)
    content_type = "audio/pcm;rate=24000;channels=1;bit-depth=16;endian=little;encoding=signed"
    pcm = {"eventType": "playAudio", "media": {"contentType": content_type, "payload": "AAAA"}}
    assert wire.read_back(json.dumps(pcm)) == (QueueAudio(b"\x00\x00\x00", 48.0),)
    with pytest.raises(BadBackMessage, match="contentType"):
        wire.read_back(json.dumps({"eventType": "playAudio", "media": {"contentType": "audio/opus", "payload": ""}}))
    assert wire.read_back('{"eventType":"clear"}') == (ClearQueue(),)

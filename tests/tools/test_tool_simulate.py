"""The simulator against a small recording WebSocket server: exact wire shapes, counters, faults.

The peer (``tests/tools/peer_server.py``) is a real aiohttp WebSocket endpoint on a free port that
records every frame; nothing here mocks the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import io
import json
import re
from array import array
from typing import Any

import pytest

from gateway.audio import CodecSpec, parse_codec, rms
from gateway.protocol import signatures
from gateway.protocol.dialects import create
from gateway.protocol.dialects.base import as_events
from gateway.protocol.events import Mark, Start
from gateway.protocol.playback import PlayAudio, PlayCommand
from gateway.tools import simulate as simulate_module
from gateway.tools.providers import PROVIDERS
from gateway.tools.simulate import SimulateOptions, simulate
from gateway.tools.wire import make_signal, track_seed
from tests.tools.peer_server import PeerSession, peer_server

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _payloads(session: PeerSession, track: str) -> list[bytes]:
    return [base64.b64decode(m["media"]["payload"]) for m in session.media(track)]


async def _run(opts: SimulateOptions, **server: Any) -> tuple[simulate_module.SimulationReport, list[PeerSession]]:
    async with peer_server(**server) as peer:
        report = await simulate(dataclasses.replace(opts, url=peer.url))
        sessions = await peer.wait_done(len(report.calls))
    return report, sessions


async def test_signalwire_messages_are_exactly_the_documented_shapes() -> None:
    opts = SimulateOptions(
        url="",
        duration=0.2,
        realtime=False,
        token="s3cret",
        params={"tenant": "acme"},
        control_id="stream-1",
    )
    report, (session,) = await _run(opts)
    call = report.calls[0]
    assert call.ok
    assert call.error is None
    assert call.close_code == 1000
    assert session.path == "/stream/stream-1"
    assert session.control_id == "stream-1"
    assert session.authorization == "Bearer s3cret"
    assert session.close_frame
    assert session.close_code == 1000

    messages = session.messages
    assert session.texts[0] == '{"event":"connected","protocol":"Call","version":"0.2.0"}'
    start = messages[1]
    assert list(start) == ["event", "sequenceNumber", "start"]
    assert start["event"] == "start"
    assert start["sequenceNumber"] == "1"
    body = start["start"]
    assert list(body) == [
        "streamSid",
        "accountSid",
        "callSid",
        "tracks",
        "customParameters",
        "mediaFormat",
    ]
    for key in ("streamSid", "accountSid", "callSid"):
        assert UUID.match(body[key]), body[key]
    assert body["callSid"] == call.call_id
    assert body["streamSid"] == call.stream_id
    assert body["accountSid"] == call.account_id
    assert body["tracks"] == ["inbound"]
    assert body["customParameters"] == {"tenant": "acme"}
    assert body["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}

    media = messages[2:-1]
    assert len(media) == 10 == call.frames_planned
    for n, message in enumerate(media):
        assert list(message) == ["event", "sequenceNumber", "media"]
        assert list(message["media"]) == ["track", "chunk", "timestamp", "payload"]
        assert message["sequenceNumber"] == str(n + 2)
        assert message["media"]["track"] == "inbound"
        assert message["media"]["chunk"] == str(n + 1)
        assert message["media"]["timestamp"] == str(20 * n)
        assert len(base64.b64decode(message["media"]["payload"])) == 160
        assert len(message["media"]["payload"]) == 216
    assert session.texts[-1] == '{"event":"stop","sequenceNumber":"12"}'
    assert _payloads(session, "inbound") == call.sent["inbound"]
    assert call.control_id == "stream-1"
    assert call.codec == "PCMU/8000"
    assert call.tracks == ("inbound",)
    assert call.messages_sent == 13
    assert call.started_at <= call.ended_at


async def test_twilio_dialect_shapes() -> None:
    opts = SimulateOptions(url="", duration=0.1, realtime=False, provider="twilio")
    report, (session,) = await _run(opts)
    call = report.calls[0]
    assert call.ok
    assert re.fullmatch(r"CA[0-9a-f]{32}", call.call_id)
    assert re.fullmatch(r"MZ[0-9a-f]{32}", call.stream_id)
    assert re.fullmatch(r"AC[0-9a-f]{32}", call.account_id)
    messages = session.messages
    assert messages[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = messages[1]
    assert list(start) == ["event", "sequenceNumber", "start", "streamSid"]
    assert start["streamSid"] == call.stream_id
    assert list(start["start"]) == [
        "accountSid",
        "streamSid",
        "callSid",
        "tracks",
        "customParameters",
        "mediaFormat",
    ]
    assert start["start"]["customParameters"] == {}
    for n, message in enumerate(messages[2:-1]):
        assert list(message) == ["event", "sequenceNumber", "media", "streamSid"]
        assert message["streamSid"] == call.stream_id
        # Twilio's own example starts the media clock at 20 (the end of the first frame).
        assert message["media"]["timestamp"] == str(20 * (n + 1))
    assert messages[-1] == {
        "event": "stop",
        "sequenceNumber": "7",
        "stop": {"accountSid": call.account_id, "callSid": call.call_id},
        "streamSid": call.stream_id,
    }


async def test_both_tracks_interleave_with_per_track_chunk_and_timestamp() -> None:
    opts = SimulateOptions(url="", duration=0.2, realtime=False, track="both", seed=5)
    report, (session,) = await _run(opts)
    call = report.calls[0]
    assert call.tracks == ("inbound", "outbound")
    assert session.messages[1]["start"]["tracks"] == ["inbound", "outbound"]
    media = session.media()
    assert [m["media"]["track"] for m in media] == ["inbound", "outbound"] * 10
    assert [int(m["sequenceNumber"]) for m in media] == list(range(2, 22))
    for track in ("inbound", "outbound"):
        frames = session.media(track)
        assert [m["media"]["chunk"] for m in frames] == [str(n) for n in range(1, 11)]
        assert [m["media"]["timestamp"] for m in frames] == [str(20 * n) for n in range(10)]
        assert _payloads(session, track) == call.sent[track]
    # Each track carries its own seeded voice, not a copy of the other.
    assert call.sent["inbound"] != call.sent["outbound"]
    assert session.messages[-1] == {"event": "stop", "sequenceNumber": "22"}


@pytest.mark.parametrize(
    ("codec", "encoding", "rate", "size"),
    [
        ("PCMA", "audio/x-alaw", 8000, 160),
        ("L16@16000", "audio/x-L16", 16000, 640),
        ("L16@24000", "audio/x-L16", 24000, 960),
    ],
)
async def test_codecs(codec: str, encoding: str, rate: int, size: int) -> None:
    opts = SimulateOptions(url="", duration=0.5, realtime=False, codec=codec, seed=2)
    report, (session,) = await _run(opts)
    call = report.calls[0]
    assert session.messages[1]["start"]["mediaFormat"] == {
        "encoding": encoding,
        "sampleRate": rate,
        "channels": 1,
    }
    payloads = _payloads(session, "inbound")
    assert {len(p) for p in payloads} == {size}
    spec = parse_codec(codec)
    decoded = spec.decode(b"".join(payloads))
    assert rms(decoded) > 300  # real audio, not silence
    # The test can regenerate exactly what the call sent from the seed.
    signal = make_signal("speech", spec, track_seed(2, 0, "inbound"), "inbound")
    assert b"".join(payloads) == spec.encode(signal.read(25 * spec.samples_per_frame))
    assert call.codec == spec.label


async def test_drop_duplicate_reorder_produce_exactly_the_reported_anomalies() -> None:
    opts = SimulateOptions(
        url="",
        duration=2.0,
        realtime=False,
        track="both",
        drop=0.1,
        duplicate=0.1,
        reorder=0.1,
        seed=11,
    )
    report, (session,) = await _run(opts)
    call = report.calls[0]
    assert call.ok
    for track in ("inbound", "outbound"):
        frames = session.media(track)
        chunks = [int(m["media"]["chunk"]) for m in frames]
        dropped, duplicated, reordered = (
            call.frames_dropped[track],
            call.frames_duplicated[track],
            call.frames_reordered[track],
        )
        assert dropped > 0
        assert duplicated > 0
        assert reordered > 0
        assert len(set(chunks)) == 100 - dropped
        assert len(chunks) - len(set(chunks)) == duplicated
        assert sum(1 for a, b in zip(chunks, chunks[1:], strict=False) if b < a) == reordered
        # A duplicate is the identical message: same counters, same payload.
        texts = [t for t in session.texts if f'"track":"{track}"' in t]
        assert len(texts) - len(set(texts)) == duplicated
        # Counters belong to the frame, so timestamp and chunk stay locked together.
        assert all(int(m["media"]["timestamp"]) == 20 * (int(m["media"]["chunk"]) - 1) for m in frames)
        assert _payloads(session, track) == call.sent[track]
        assert len(call.sent[track]) == 100 - dropped + duplicated
    # sequenceNumber: a gap for every dropped frame, shared across tracks.
    seqs = [int(m["sequenceNumber"]) for m in session.media()]
    assert len(set(seqs)) == 200 - sum(call.frames_dropped.values())
    assert max(seqs) == 201
    assert session.messages[-1] == {"event": "stop", "sequenceNumber": "202"}


async def test_fault_injection_is_reproducible_from_the_seed() -> None:
    opts = SimulateOptions(url="", duration=1.0, realtime=False, drop=0.2, reorder=0.2, seed=4)
    first, _ = await _run(opts)
    second, _ = await _run(opts)
    assert first.calls[0].sent == second.calls[0].sent
    assert first.calls[0].frames_dropped == second.calls[0].frames_dropped


async def test_no_connected_starts_with_start() -> None:
    report, (session,) = await _run(SimulateOptions(url="", duration=0.1, realtime=False, no_connected=True))
    assert report.calls[0].ok
    assert session.messages[0]["event"] == "start"
    assert all(m["event"] != "connected" for m in session.messages)


async def test_abrupt_close_sends_no_stop_and_no_close_frame() -> None:
    report, (session,) = await _run(SimulateOptions(url="", duration=0.2, realtime=False, abrupt_close=True))
    call = report.calls[0]
    assert call.ok
    assert call.close_code is None
    assert call.error is None
    assert not session.close_frame
    assert session.ended_by in {"CLOSED", "ERROR"}
    assert [m["event"] for m in session.messages] == ["connected", "start"] + ["media"] * 10
    assert _payloads(session, "inbound") == call.sent["inbound"]


async def test_server_close_is_recorded_and_stops_sending() -> None:
    opts = SimulateOptions(url="", duration=2.0, realtime=True)
    report, (session,) = await _run(opts, close_after_media=5, close_code=1008, close_message=b"route not found")
    call = report.calls[0]
    assert call.close_code == 1008
    assert call.close_reason == "route not found"
    assert call.closed_by_server
    assert not call.ok
    assert len(call.sent["inbound"]) < 100
    assert all(m["event"] != "stop" for m in session.messages)
    assert report.failures == [call]


async def test_frames_from_the_server_are_read_and_kept() -> None:
    back = ('{"event":"mark","streamSid":"x","mark":{"name":"m1"}}', '{"event":"clear","streamSid":"x"}')
    report, _ = await _run(SimulateOptions(url="", duration=0.1, realtime=False), send_back=back)
    assert report.calls[0].received == list(back)
    assert report.calls[0].ok


async def test_refused_handshake_is_an_error() -> None:
    async with peer_server(token="right") as peer:
        opts = SimulateOptions(url=peer.url, token="wrong", duration=0.1, realtime=False)
        report = await simulate(opts)
    call = report.calls[0]
    assert call.error is not None
    assert "401" in call.error
    assert not call.ok


async def test_control_id_in_params_and_many_calls_with_ramp() -> None:
    opts = SimulateOptions(
        url="",
        calls=4,
        duration=0.1,
        realtime=False,
        control_id="route-{i}",
        control_id_in_path=False,
        params={"k": "v"},
        ramp=0.05,
    )
    report, sessions = await _run(opts)
    assert [c.control_id for c in report.calls] == [f"route-{i}" for i in range(4)]
    assert len({c.call_id for c in report.calls}) == 4
    seen = sorted(s.messages[1]["start"]["customParameters"]["control_id"] for s in sessions)
    assert seen == [f"route-{i}" for i in range(4)]
    assert all(s.path == "/stream" for s in sessions)
    assert all(s.messages[1]["start"]["customParameters"]["k"] == "v" for s in sessions)
    assert all(c.ok for c in report.calls)


async def test_control_id_defaults_to_the_stream_id() -> None:
    report, (session,) = await _run(SimulateOptions(url="", duration=0.1, realtime=False))
    assert report.calls[0].control_id == report.calls[0].stream_id
    assert session.path == "/stream"


async def test_realtime_pacing_keeps_to_the_media_clock() -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    report, (session,) = await _run(SimulateOptions(url="", duration=0.5, track="both"))
    elapsed = loop.time() - began
    assert report.calls[0].ok
    assert len(session.media()) == 50
    # At least the audio's own duration, and not wildly more (loose: shared CI machines).
    assert 0.5 <= elapsed < 3.0
    assert report.elapsed >= 0.5


def test_options_validate() -> None:
    with pytest.raises(ValueError, match="probability"):
        SimulateOptions(drop=1.5)
    with pytest.raises(ValueError, match="codec"):
        SimulateOptions(codec="OPUS")
    with pytest.raises(ValueError, match="calls"):
        SimulateOptions(calls=0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamgw")
    simulate_module.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_flags_map_onto_options() -> None:
    args = _parser().parse_args(
        [
            "simulate",
            "--url=ws://h:1/stream",
            "--calls=3",
            "--track=both",
            "--codec=L16@24000",
            "--duration=2.5",
            "--max-rate",
            "--token=t",
            "--param",
            "a=1",
            "--param",
            "b=x=y",
            "--control-id=c",
            "--control-id-in-params",
            "--dialect=twilio",
            "--signal=tone",
            "--drop=0.1",
            "--duplicate=0.2",
            "--reorder=0.3",
            "--no-connected",
            "--abrupt-close",
            "--seed=9",
            "--ramp=1.5",
        ]
    )
    assert args.func is simulate_module.run_cli
    assert simulate_module.options_from_args(args) == SimulateOptions(
        url="ws://h:1/stream",
        calls=3,
        track="both",
        codec="L16@24000",
        duration=2.5,
        realtime=False,
        token="t",
        params={"a": "1", "b": "x=y"},
        control_id="c",
        control_id_in_path=False,
        provider="twilio",
        signal="tone",
        drop=0.1,
        duplicate=0.2,
        reorder=0.3,
        no_connected=True,
        abrupt_close=True,
        seed=9,
        ramp=1.5,
    )


async def test_cli_exit_codes_and_summary() -> None:
    async with peer_server() as peer:
        args = _parser().parse_args(["simulate", f"--url={peer.url}", "--calls=2", "--duration=0.1", "--max-rate"])
        out = io.StringIO()
        code = await asyncio.to_thread(args.func, args, out)
        await peer.wait_done(2)
    assert code == 0
    text = out.getvalue()
    assert "total: 2 calls, 10 frames sent" in text
    assert "{'1000': 2}" in text

    async with peer_server(close_after_media=1, close_code=1011) as peer:
        args = _parser().parse_args(["simulate", f"--url={peer.url}", "--duration=0.5"])
        out = io.StringIO()
        code = await asyncio.to_thread(args.func, args, out)
        await peer.wait_done(1)
    assert code == 1
    assert "1011" in out.getvalue()


def test_cli_rejects_a_bad_param() -> None:
    args = _parser().parse_args(["simulate", "--param", "novalue"])
    assert simulate_module.run_cli(args, io.StringIO()) == 2


def test_module_entry_point() -> None:
    from gateway.tools.__main__ import main

    assert main(["simulate", "--param", "novalue"]) == 2


# -- every provider ------------------------------------------------------------------------------


def _shape(name: str) -> dict[str, Any]:
    """Options that use what each provider can carry: two tracks where it can, DTMF where it has it."""
    shape: dict[str, Any] = (
        {"track": "both"} if name in ("signalwire", "twilio", "telnyx", "plivo", "exotel", "bandwidth") else {}
    )
    if name == "jambonz":
        shape["mix_type"] = "stereo"
    if name != "bandwidth":
        shape["dtmf"] = "19"
    return shape


def _media_on_the_wire(name: str, session: PeerSession) -> dict[str, list[bytes]]:
    """What the peer received as audio, per track, read the way the provider writes it."""
    out: dict[str, list[bytes]] = {"inbound": [], "outbound": []}
    if name in ("vonage", "jambonz"):
        for frame in session.binaries:
            if name == "jambonz":
                samples = array("h", frame)
                out["inbound"].append(samples[0::2].tobytes())
                out["outbound"].append(samples[1::2].tobytes())
            else:
                out["inbound"].append(frame)
        return out
    for message in session.messages:
        if message.get("event") == "media" or message.get("eventType") == "media":
            body = message.get("media", message)
            out[body.get("track", "inbound")].append(base64.b64decode(body["payload"]))
    return out


@pytest.mark.parametrize("name", list(PROVIDERS))
async def test_every_provider_streams_its_own_wire_format(name: str) -> None:
    opts = SimulateOptions(
        url="", provider=name, duration=0.2, realtime=False, params={"tenant": "acme"}, **_shape(name)
    )  # type: ignore[arg-type]
    report, (session,) = await _run(opts, protocols=("audio.jambonz.org",))
    call = report.calls[0]
    assert call.ok, call.error
    assert call.provider == name
    assert session.close_frame and session.close_code == 1000
    wire = _media_on_the_wire(name, session)
    for track in call.tracks:
        assert wire[track] == call.sent[track]
        assert len(call.sent[track]) == call.frames_planned > 0
    frame_ms = 100 if name == "exotel" else 20
    assert call.frames_planned == 200 // frame_ms
    first = session.frames[0]
    assert isinstance(first, str)
    texts = [json.loads(t) for t in session.texts]
    if name == "jambonz":
        assert call.subprotocol == session.subprotocol == "audio.jambonz.org"
        assert json.loads(first)["mixType"] == "stereo"
    else:
        assert call.subprotocol is None
    if name != "bandwidth":
        assert call.dtmf_sent == ["1", "9"]
        dtmf = [t for t in texts if t.get("event") in ("dtmf", "websocket:dtmf")]
        assert len(dtmf) == 2
    last = texts[-1]
    ends_with_stop = name not in ("vonage", "plivo", "jambonz")
    assert (last.get("event") == "stop" or last.get("eventType") == "stop") == ends_with_stop
    assert call.messages_sent == len(session.frames)


async def test_credentials_on_the_upgrade() -> None:
    report, (session,) = await _run(
        SimulateOptions(url="", duration=0.02, realtime=False, provider="telnyx", token="t0k")
    )
    assert report.calls[0].ok
    assert session.headers["X-Telnyx-Streaming-Auth-Token"] == "t0k" and session.authorization is None
    report, (session,) = await _run(
        SimulateOptions(url="", duration=0.02, realtime=False, provider="exotel", basic="key:s3cret")
    )
    assert session.authorization == "Basic " + base64.b64encode(b"key:s3cret").decode()
    opts = SimulateOptions(
        url="", duration=0.02, realtime=False, provider="twilio", twilio_auth_token="tw1l10", control_id="bot-1"
    )
    report, (session,) = await _run(opts)
    signed = f"wss://{session.headers['Host']}{session.path}"
    assert session.headers["X-Twilio-Signature"] == signatures.twilio_signature("tw1l10", signed)
    assert session.authorization is None
    opts = SimulateOptions(
        url="",
        duration=0.02,
        realtime=False,
        provider="twilio",
        twilio_auth_token="k",
        signature_url="wss://public.example/stream",
    )
    report, (session,) = await _run(opts)
    assert session.headers["X-Twilio-Signature"] == signatures.twilio_signature("k", "wss://public.example/stream")


class GatewayLikePeer:
    """Answers the provider as the gateway would, with the gateway's own dialect: once the stream has
    started, sends ``replies`` (playback messages, encoded for the provider), and decodes everything
    the provider sends after (its mark echoes among them)."""

    def __init__(self, name: str, replies: list[PlayAudio | PlayCommand]) -> None:
        self.name = name
        self.replies = replies
        self.dialects: dict[int, Any] = {}
        self.marks: list[str] = []

    def __call__(self, session: PeerSession, data: str | bytes) -> list[str | bytes]:
        dialect = self.dialects.setdefault(id(session), create(self.name, forced=True))
        events = as_events(dialect.binary(data) if isinstance(data, bytes) else dialect.text(data))
        self.marks.extend(e.name for e in events if isinstance(e, Mark))
        start = next((e for e in events if isinstance(e, Start)), None)
        if start is None:
            return []
        out: list[str | bytes] = []
        for reply in self.replies:
            frames = dialect.encode(start.stream_id, reply) or ()  # None: the provider has no such message
            out.extend(f.data if f.binary else f.data.decode() for f in frames)
        return out


def _codec_of(name: str) -> CodecSpec:
    return parse_codec(PROVIDERS[name].default_codec)


@pytest.mark.parametrize("name", list(PROVIDERS))
async def test_bidirectional_plays_what_comes_back_and_echoes_marks(name: str) -> None:
    codec = _codec_of(name)
    audio = codec.silence(codec.sample_rate // 10)  # 100 ms
    peer = GatewayLikePeer(name, [PlayAudio(audio), PlayCommand("mark", "m-1")])
    wait = {"await_played": len(audio)} if name == "bandwidth" else {"await_marks": 1}
    opts = SimulateOptions(url="", provider=name, duration=0.04, realtime=False, bidirectional=True, linger=20, **wait)  # type: ignore[arg-type]
    report, (session,) = await _run(opts, respond=peer, protocols=("audio.jambonz.org",))
    call = report.calls[0]
    assert call.ok, (call.error, call.refused)
    assert call.refused == []
    assert call.received_audio_bytes == len(audio)
    assert call.played_bytes == len(audio)  # a mark comes back only once everything before it played
    if name == "bandwidth":
        assert call.marks_echoed == [] and peer.marks == []
        return
    expected = {"vonage": '{"name":"m-1"}', "jambonz": "playAudio#1"}.get(name, "m-1")
    assert call.marks_echoed == [expected]
    assert peer.marks == ["m-1"]  # the gateway's dialect reads the echo as the consumer's mark
    # The echo took its place in the provider's message counter: still one number per message.
    if name in ("twilio", "telnyx", "exotel", "plivo"):
        counters = [json.loads(t).get("sequenceNumber", json.loads(t).get("sequence_number")) for t in session.texts]
        numbers = [int(n) for n in counters if n is not None]
        assert numbers == list(range(1, len(numbers) + 1))


@pytest.mark.parametrize("name", ["twilio", "telnyx", "exotel", "vonage", "plivo", "jambonz"])
async def test_clear_drops_the_queue_and_answers_as_the_provider_does(name: str) -> None:
    codec = _codec_of(name)
    long = codec.silence(codec.sample_rate * 4)  # four seconds: still queued when the clear comes
    peer = GatewayLikePeer(name, [PlayAudio(long), PlayCommand("mark", "m-1"), PlayCommand("clear")])
    opts = SimulateOptions(url="", provider=name, duration=0.2, realtime=True, bidirectional=True)  # type: ignore[arg-type]
    report, (session,) = await _run(opts, respond=peer, protocols=("audio.jambonz.org",))
    call = report.calls[0]
    assert call.ok, call.error
    assert call.clears == 1
    assert call.cleared_bytes > 0 and call.played_bytes + call.cleared_bytes == len(long)
    texts = [json.loads(t) for t in session.texts]
    if name in ("twilio", "telnyx", "exotel"):  # pending marks come back on a clear
        assert call.marks_echoed == ["m-1"] and peer.marks == ["m-1"]
    if name == "jambonz":  # the cut-short playAudio is answered; the gateway already released the mark
        assert call.marks_echoed == ["playAudio#1"]
    if name == "vonage":
        assert call.marks_echoed == [] and {"event": "websocket:cleared"} in texts
    if name == "plivo":
        assert call.marks_echoed == [] and any(t.get("event") == "clearedAudio" for t in texts)


async def test_vonage_drops_the_socket_on_a_frame_that_is_not_20_ms() -> None:
    opts = SimulateOptions(url="", provider="vonage", duration=2.0, realtime=True, bidirectional=True)
    answer = {"sent": False}

    def bad_frame(session: PeerSession, data: str | bytes) -> list[str | bytes]:
        if answer["sent"]:
            return []
        answer["sent"] = True
        return [b"\x00" * 100]

    report, (session,) = await _run(opts, respond=bad_frame)
    call = report.calls[0]
    assert call.error is not None and "dropped the connection" in call.error
    assert not call.ok
    assert not session.close_frame  # dropped, not closed
    assert len(call.sent["inbound"]) < 100


async def test_jambonz_disconnect_ends_the_call_with_a_normal_close() -> None:
    opts = SimulateOptions(url="", provider="jambonz", duration=2.0, realtime=True, bidirectional=True)

    def disconnect(session: PeerSession, data: str | bytes) -> list[str | bytes]:
        return ['{"type":"disconnect"}'] if isinstance(data, str) else []

    report, (session,) = await _run(opts, respond=disconnect)
    call = report.calls[0]
    assert call.ok and call.close_code == 1000
    assert session.close_frame and session.close_code == 1000
    assert len(call.sent["inbound"]) < 100


async def test_what_the_provider_would_refuse_is_recorded() -> None:
    def wrong(session: PeerSession, data: str | bytes) -> list[str | bytes]:
        return (
            [b"\xff" * 160, '{"event":"media","streamSid":"MZ0","media":{"payload":""}}']
            if len(session.frames) == 2
            else []
        )

    opts = SimulateOptions(url="", provider="twilio", duration=0.1, realtime=False, bidirectional=True)
    report, _ = await _run(opts, respond=wrong)
    call = report.calls[0]
    assert call.ok  # Twilio warns about a bad message, it does not hang up
    assert len(call.refused) == 2 and "binary" in call.refused[0] and "streamSid" in call.refused[1]
    assert call.received_audio_bytes == 0


def test_provider_options_validate() -> None:
    with pytest.raises(ValueError, match="no DTMF"):
        SimulateOptions(provider="bandwidth", dtmf="1")
    with pytest.raises(ValueError, match="dtmf digits"):
        SimulateOptions(dtmf="x")
    with pytest.raises(ValueError, match="L16"):
        SimulateOptions(provider="vonage", codec="PCMU")
    with pytest.raises(ValueError, match="user:password"):
        SimulateOptions(basic="nocolon")
    with pytest.raises(ValueError, match="posts no stream status"):
        SimulateOptions(provider="vonage", status_url="http://h/status")
    with pytest.raises(ValueError, match="swml or cxml"):
        SimulateOptions(provider="signalwire", status_format="texml")
    assert SimulateOptions(provider="vonage").codec_spec.label == "L16/16000"
    assert SimulateOptions(provider="exotel").codec_spec.label == "L16/8000"


def test_cli_provider_flags_map_onto_options() -> None:
    args = _parser().parse_args(
        [
            "simulate",
            "--provider=jambonz",
            "--mix-type=stereo",
            "--codec=L16@16000",
            "--basic=jb:s3cret",
            "--dtmf=12#",
            "--bidirectional",
            "--await-marks=2",
            "--await-played=640",
            "--linger=5",
        ]
    )
    opts = simulate_module.options_from_args(args)
    assert (opts.provider, opts.mix_type, opts.codec, opts.basic, opts.dtmf) == (
        "jambonz",
        "stereo",
        "L16@16000",
        "jb:s3cret",
        "12#",
    )
    assert (opts.bidirectional, opts.await_marks, opts.await_played, opts.linger) == (True, 2, 640, 5.0)
    args = _parser().parse_args(
        [
            "simulate",
            "--dialect=telnyx",  # the older spelling of --provider
            "--twilio-auth-token=tw",
            "--signature-url=wss://gw.example/stream",
            "--status-url=http://h/status",
            "--status-format=texml",
            "--status-token=st",
            "--status-basic=u:p",
            "--status-signing-key=k",
        ]
    )
    opts = simulate_module.options_from_args(args)
    assert opts.provider == "telnyx" and opts.codec is None and opts.codec_spec.label == "PCMU/8000"
    assert (opts.twilio_auth_token, opts.signature_url) == ("tw", "wss://gw.example/stream")
    assert (opts.status_url, opts.status_format, opts.status_token, opts.status_basic, opts.status_signing_key) == (
        "http://h/status",
        "texml",
        "st",
        "u:p",
        "k",
    )
    bad = _parser().parse_args(["simulate", "--provider=bandwidth", "--dtmf=1"])
    assert simulate_module.run_cli(bad, io.StringIO()) == 2


async def test_await_marks_that_never_come_is_a_failure_after_the_linger() -> None:
    opts = SimulateOptions(url="", duration=0.04, realtime=False, bidirectional=True, await_marks=1, linger=0.1)
    report, (session,) = await _run(opts)
    call = report.calls[0]
    assert call.error is not None and "0 of 1 marks echoed" in call.error
    assert not call.ok
    assert call.close_code == 1000 and session.close_frame  # the call itself still ends normally
    assert len(call.sent["inbound"]) > call.frames_planned  # media kept flowing while it waited


def test_token_and_basic_cannot_share_the_authorization_header() -> None:
    with pytest.raises(ValueError, match="Authorization"):
        SimulateOptions(token="t", basic="u:p")
    assert (
        SimulateOptions(provider="telnyx", token="t", basic="u:p").basic == "u:p"
    )  # Telnyx's token has its own header

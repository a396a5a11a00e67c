"""``streamgw replay`` against a call recorded through a real gateway's durable route.

A gateway in this process publishes simulated calls into a JetStream stream (a real
nats-server); the call ends, and only then does the replay run: WAVs compared sample for sample
with what the simulator sent (``CallReport.sent``, decoded), and a consumer that was not
subscribed during the call receiving it all again, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.msg import Msg

from gateway.audio import parse_codec, read_wav
from gateway.cli import main
from gateway.embedded_nats import EmbeddedNats
from gateway.tools.replay import ReplayOptions, replay, subject_filter
from gateway.tools.simulate import CallReport, SimulateOptions, simulate
from tests.reliability.harness import RunningGateway, eventually, start_gateway
from tests.reliability.jsstore import create_stream, durable_route, file_routes

STREAM = "CALLS"
AUDIO = "calls.{call_id}.{track}"
EVENTS = "calls.ev.{call_id}"


@pytest.fixture
async def durable_gateway(nats_server: EmbeddedNats, tmp_path: Path) -> AsyncIterator[RunningGateway]:
    await create_stream(nats_server.url, STREAM, ["calls.>"])
    routes = durable_route(tmp_path, STREAM, subject=AUDIO, events_subject=EVENTS)
    gw = await start_gateway(nats_server.url, **file_routes(routes))
    try:
        yield gw
    finally:
        await gw.server.drain_and_stop()


async def record(gw: RunningGateway, *, calls: int, seed: int) -> list[CallReport]:
    report = await simulate(
        SimulateOptions(url=gw.ws_url, calls=calls, track="both", duration=1.0, realtime=False, seed=seed)
    )
    await eventually(gw.idle, 20, "every frame stored")
    for call in report.calls:
        assert call.error is None and call.close_code == 1000, (call.call_id, call.error)
    return report.calls


def wav_names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.wav"))


def test_the_subject_filter_renders_the_call_and_leaves_the_rest_open() -> None:
    assert subject_filter("audio.{call_id}.{track}", "CA1") == "audio.CA1.*"
    assert subject_filter("calls.{route}.{call_id}.{track}", "CA.1") == "calls.*.CA_1.*"
    assert subject_filter("a.x{stream_id}.{track}", "CA1", "inbound") == "a.*.inbound"
    assert subject_filter("rec.{account_id}", "CA1") == "rec.*"


async def test_wavs_of_a_recorded_call_match_what_was_sent_sample_for_sample(
    durable_gateway: RunningGateway, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    wanted, other = await record(durable_gateway, calls=2, seed=7)
    out = tmp_path / "wav"
    argv = ["replay", "--nats-url", nats_server.url, "--stream", STREAM, "--call", wanted.call_id]
    argv += ["--subject", AUDIO, "--events-subject", EVENTS, "--wav", str(out)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = await asyncio.to_thread(main, argv)
    assert code == 0, printed.getvalue()
    codec = parse_codec(wanted.codec)
    for track in ("inbound", "outbound"):
        wav = read_wav(out / f"{wanted.call_id}-{track}.wav")
        assert wav.sample_rate == codec.sample_rate and wav.channels == 1
        assert list(wav.samples) == list(codec.decode(b"".join(wanted.sent[track]))), track
    assert wav_names(out) == [f"{wanted.call_id}-inbound.wav", f"{wanted.call_id}-outbound.wav"]
    assert other.call_id not in printed.getvalue() and "missing 0" in printed.getvalue()


async def test_one_track_only(durable_gateway: RunningGateway, nats_server: EmbeddedNats, tmp_path: Path) -> None:
    (call,) = await record(durable_gateway, calls=1, seed=8)
    report = await replay(
        ReplayOptions(
            stream=STREAM,
            call_id=call.call_id,
            nats_url=nats_server.url,
            track="outbound",
            audio_subject=AUDIO,
            events_subject=EVENTS,
            wav_dir=tmp_path,
        )
    )
    assert [t.track for t in report.tracks] == ["outbound"]
    assert [f.payload for f in report.tracks[0].frames] == call.sent["outbound"]
    assert wav_names(tmp_path) == [f"{call.call_id}-outbound.wav"]


async def test_a_consumer_that_was_down_catches_up_in_order(
    durable_gateway: RunningGateway, nats_server: EmbeddedNats
) -> None:
    (call,) = await record(durable_gateway, calls=1, seed=9)
    nc = await nats.connect(nats_server.url)  # the consumer comes back after the call
    got: list[Msg] = []

    async def on_msg(msg: Msg) -> None:
        got.append(msg)

    await nc.subscribe("catchup.>", cb=on_msg)
    await nc.flush()
    try:
        report = await replay(
            ReplayOptions(
                stream=STREAM,
                call_id=call.call_id,
                nats_url=nats_server.url,
                audio_subject=AUDIO,
                events_subject=EVENTS,
                to="catchup.{call_id}.{track}",
                events_to="catchup.ev.{call_id}",
                realtime=True,
            )
        )
        total = call.frames_sent + 2
        assert report.republished == total
        await eventually(lambda: len(got) >= total, 10, "every republished message")
    finally:
        await nc.close()
    events = [m for m in got if m.subject == f"catchup.ev.{call.call_id}"]
    assert [msgspec.json.decode(m.data)["type"] for m in events] == ["started", "stopped"]
    assert got[0] is events[0] and got[-1] is events[-1]  # started first, stopped last
    audio = [m for m in got if m not in events]
    assert all(m.headers is not None and m.headers["Sgw-Replay"] == "true" for m in audio)
    assert all(m.headers is not None and "Nats-Msg-Id" not in m.headers for m in audio)
    stamps = [int((m.headers or {})["Sgw-Ts"]) for m in audio]
    assert stamps == sorted(stamps), "the tracks are interleaved by Sgw-Ts"
    for track in ("inbound", "outbound"):
        frames = [m for m in audio if m.subject == f"catchup.{call.call_id}.{track}"]
        assert [int((m.headers or {})["Sgw-Seq"]) for m in frames] == list(range(1, len(call.sent[track]) + 1))
        assert [m.data for m in frames] == call.sent[track]


async def test_a_call_the_stream_does_not_hold_and_a_missing_stream_are_exit_codes(
    durable_gateway: RunningGateway, nats_server: EmbeddedNats
) -> None:
    base = ["replay", "--nats-url", nats_server.url, "--subject", AUDIO, "--events-subject", EVENTS]
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert await asyncio.to_thread(main, [*base, "--stream", STREAM, "--call", "CA-none"]) == 1
        assert await asyncio.to_thread(main, [*base, "--stream", "NOPE", "--call", "CA-none"]) == 2
    assert "holds nothing of call CA-none" in err.getvalue() and "no JetStream stream 'NOPE'" in err.getvalue()


async def test_a_copy_is_skipped_and_a_missing_frame_is_silence(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    """Messages shaped like a durable route's, stored directly: frame 2 twice (as a copy sent again
    after the stream's duplicate window would be), frame 3 never."""
    await create_stream(nats_server.url, STREAM, ["calls.>"])
    codec = parse_codec("PCMA")
    frames = {seq: codec.encode([100 * seq] * codec.samples_per_frame) for seq in (1, 2, 4)}
    nc = await nats.connect(nats_server.url)
    try:
        js = nc.jetstream()
        started = {"type": "started", "call_id": "CA9", "stream_id": "MZ9", "codec": codec.label, "ts": 1.0}
        await js.publish(EVENTS.format(call_id="CA9"), msgspec.json.encode(started), headers={"Sgw-Event": "started"})
        for seq, copy in ((1, False), (2, False), (2, True), (4, False)):
            headers = {"Sgw-Seq": str(seq), "Sgw-Ts": str(20 * (seq - 1)), "Sgw-Stream-Id": "MZ9"}
            if not copy:  # a copy with the same id would be dropped by the stream: it has none
                headers["Nats-Msg-Id"] = f"MZ9:inbound:{seq}"
            await js.publish("calls.CA9.inbound", frames[seq], headers=headers)
    finally:
        await nc.close()
    report = await replay(
        ReplayOptions(
            stream=STREAM,
            call_id="CA9",
            nats_url=nats_server.url,
            audio_subject=AUDIO,
            events_subject=EVENTS,
            wav_dir=tmp_path,
        )
    )
    (track,) = report.tracks
    assert [f.seq for f in track.frames] == [1, 2, 4] and track.duplicates == 1 and track.missing == 1
    samples = list(read_wav(tmp_path / "CA9-inbound.wav").samples)
    size = codec.samples_per_frame
    assert samples[2 * size : 3 * size] == [0] * size
    assert samples[3 * size :] == list(codec.decode(frames[4]))
    assert samples[:size] == list(codec.decode(frames[1]))

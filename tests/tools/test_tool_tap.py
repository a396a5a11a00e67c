"""The tap against a real nats-server, fed with messages shaped exactly like the gateway's.

Audio on ``audio.{call_id}.{track}`` with ``Sgw-Seq``/``Sgw-Ts``/``Sgw-Codec``/``Sgw-Stream-Id``
headers and the raw payload; JSON events on ``events.{call_id}``. The test publishes them and
checks the tap's counts and the WAV files it writes against what was sent.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import time
import uuid
from array import array
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

from gateway.audio import CodecSpec, parse_codec, read_wav, speech_like
from gateway.embedded_nats import EmbeddedNats
from gateway.tools import tap as tap_module
from gateway.tools.tap import TapOptions, TapReport, tap

TIMEOUT = 15.0


@pytest.fixture
async def nc(nats_server: EmbeddedNats) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url)
    yield client
    await client.drain()


class FakeGatewayStream:
    """Publishes one stream the way the gateway does."""

    def __init__(self, client: Client, codec: CodecSpec, tracks: tuple[str, ...], provider: str = "signalwire") -> None:
        self.client = client
        self.codec = codec
        self.provider = provider
        self.tracks = tracks
        self.call_id = str(uuid.uuid4())
        self.stream_id = str(uuid.uuid4())
        self.published: dict[str, int] = dict.fromkeys(tracks, 0)

    def frames(self, track: str, count: int, seed: int) -> list[bytes]:
        samples = speech_like(self.codec.sample_rate, count * self.codec.samples_per_frame, seed=seed)
        size = self.codec.samples_per_frame
        return [self.codec.encode(samples[i * size : (i + 1) * size]) for i in range(count)]

    async def event(self, kind: str, **fields: Any) -> None:
        body = {
            "type": kind,
            "call_id": self.call_id,
            "stream_id": self.stream_id,
            "control_id": "ctl-1",
            "ts": time.time(),
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            **fields,
        }
        headers = {"Sgw-Stream-Id": self.stream_id, "Sgw-Event": kind}
        await self.client.publish(f"events.{self.call_id}", json.dumps(body).encode(), headers=headers)

    async def started(self) -> None:
        await self.event(
            "started",
            route="default",
            provider=self.provider,
            tracks=list(self.tracks),
            codec=self.codec.label,
            sample_rate=self.codec.sample_rate,
            custom_parameters={"tenant": "acme"},
        )

    async def audio(self, track: str, seq: int, payload: bytes, ts: int | None = None) -> None:
        headers = {
            "Sgw-Seq": str(seq),
            "Sgw-Ts": str(20 * (seq - 1) if ts is None else ts),
            "Sgw-Codec": self.codec.label,
            "Sgw-Stream-Id": self.stream_id,
        }
        await self.client.publish(f"audio.{self.call_id}.{track}", payload, headers=headers)
        self.published[track] += 1

    async def stopped(self, frames: dict[str, int] | None = None) -> None:
        counts = frames or self.published
        tracks = {
            t: {"frames": counts[t], "gaps": 0, "duplicates": 0, "reordered": 0, "dropped": 0} for t in self.tracks
        }
        await self.event("stopped", reason="stop", tracks=tracks)


async def _start_tap(opts: TapOptions, out: io.StringIO) -> asyncio.Task[TapReport]:
    ready = asyncio.Event()
    task = asyncio.create_task(tap(opts, out, ready=ready))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # surfaces the error
    assert ready.is_set()
    return task


def _expected_pcm(codec: CodecSpec, frames: list[bytes], order: Iterable[int | None]) -> array[int]:
    """Decoded audio in Sgw-Seq order; None marks a lost frame (one frame of silence)."""
    out = array("h")
    for index in order:
        if index is None:
            out.extend([0] * codec.samples_per_frame)
        else:
            out.extend(codec.decode(frames[index]))
    return out


@pytest.mark.parametrize("codec_name", ["PCMU/8000", "PCMA/8000", "L16/8000", "L16/16000", "L16/24000", "L16/48000"])
async def test_tap_writes_wavs_in_seq_order_and_counts_anomalies(
    nats_server: EmbeddedNats, nc: Client, tmp_path: Path, codec_name: str
) -> None:
    codec = parse_codec(codec_name)
    out = io.StringIO()
    opts = TapOptions(nats_server.url, wav_dir=tmp_path, calls=1, refresh=0.05)
    task = await _start_tap(opts, out)

    stream = FakeGatewayStream(nc, codec, ("inbound", "outbound"))
    inbound = stream.frames("inbound", 20, seed=1)
    outbound = stream.frames("outbound", 20, seed=2)
    await stream.started()
    # inbound: seq 5 lost, seq 7 delivered twice, 11 and 12 swapped.
    order = [1, 2, 3, 4, 6, 7, 7, 8, 9, 10, 12, 11, *range(13, 21)]
    for position, seq in enumerate(order):
        await stream.audio("inbound", seq, inbound[seq - 1])
        if position < 20:
            await stream.audio("outbound", position + 1, outbound[position])
    await stream.stopped()
    await nc.flush()
    report = await asyncio.wait_for(task, TIMEOUT)

    assert report.stopped == 1
    call = report.call(stream.call_id)
    assert call.stream_id == stream.stream_id
    assert call.control_id == "ctl-1"
    assert call.provider == "signalwire"
    assert call.started is not None
    assert call.started["custom_parameters"] == {"tenant": "acme"}
    assert call.stopped is not None
    assert [e["type"] for e in call.events] == ["started", "stopped"]

    tin, tout = call.tracks["inbound"], call.tracks["outbound"]
    assert (tin.frames, tin.gaps, tin.duplicates, tin.reordered) == (20, 1, 1, 1)
    assert (tout.frames, tout.gaps, tout.duplicates, tout.reordered) == (20, 0, 0, 0)
    assert tin.codec == tout.codec == codec.label
    assert tin.bytes == 20 * codec.bytes_per_frame
    assert (tin.first_seq, tin.last_seq) == (1, 20)
    assert tin.latency_ms_max is not None
    assert tin.latency_ms_max < 60_000

    assert tin.wav_path == tmp_path / f"{stream.call_id}-inbound.wav"
    assert tout.wav_path == tmp_path / f"{stream.call_id}-outbound.wav"
    assert tin.silence_frames == 1
    wav_in, wav_out = read_wav(tin.wav_path), read_wav(tout.wav_path)
    assert wav_in.sample_rate == wav_out.sample_rate == codec.sample_rate
    assert wav_in.channels == 1
    # Sample-exact: L16 round-trips untouched; G.711 is compared with decoding the sent bytes.
    expected_in = _expected_pcm(codec, inbound, [0, 1, 2, 3, None, *range(5, 20)])
    assert wav_in.samples == expected_in
    assert wav_out.samples == _expected_pcm(codec, outbound, range(20))
    if codec.name == "L16":
        raw = array("h", speech_like(codec.sample_rate, 20 * codec.samples_per_frame, seed=2))
        assert wav_out.samples == raw
    assert sorted(os.listdir(tmp_path)) == sorted([tin.wav_path.name, tout.wav_path.name])
    assert "inbound" in out.getvalue()
    assert f'event started call={stream.call_id} provider="signalwire"' in out.getvalue()
    assert any(line.startswith(stream.call_id) and "  signalwire  " in line for line in out.getvalue().splitlines())


async def test_ts_timeline_repairs_provider_drops_duplicates_and_reordering(
    nats_server: EmbeddedNats, nc: Client, tmp_path: Path
) -> None:
    # The gateway numbers what it forwards, so Sgw-Seq is contiguous while Sgw-Ts carries the
    # provider's own faults: frame 3 lost, frame 5 twice, frames 7 and 8 swapped.
    codec = parse_codec("L16@16000")
    opts = TapOptions(nats_server.url, wav_dir=tmp_path, calls=1, quiet=True, timeline="ts")
    task = await _start_tap(opts, io.StringIO())
    stream = FakeGatewayStream(nc, codec, ("inbound",))
    frames = stream.frames("inbound", 10, seed=4)
    await stream.started()
    provider_order = [0, 1, 2, 4, 5, 5, 6, 8, 7, 9]
    for seq, index in enumerate(provider_order, start=1):
        await stream.audio("inbound", seq, frames[index], ts=20 * index)
    await stream.stopped()
    report = await asyncio.wait_for(task, TIMEOUT)
    track = report.call(stream.call_id).tracks["inbound"]
    assert (track.frames, track.gaps, track.duplicates, track.reordered) == (10, 0, 0, 0)
    assert track.silence_frames == 1
    assert track.wav_path is not None
    expected = _expected_pcm(codec, frames, [0, 1, 2, None, 4, 5, 6, 7, 8, 9])
    assert read_wav(track.wav_path).samples == expected


async def test_missing_tail_is_finalised_after_the_grace_period(
    nats_server: EmbeddedNats, nc: Client, tmp_path: Path
) -> None:
    codec = parse_codec("PCMU")
    opts = TapOptions(nats_server.url, wav_dir=tmp_path, calls=1, quiet=True, stop_grace=0.2)
    out = io.StringIO()
    task = await _start_tap(opts, out)
    stream = FakeGatewayStream(nc, codec, ("inbound",))
    frames = stream.frames("inbound", 5, seed=3)
    await stream.started()
    for seq in (1, 2, 3):
        await stream.audio("inbound", seq, frames[seq - 1])
    await stream.stopped({"inbound": 5})  # the gateway says 5; two never reach the bus
    report = await asyncio.wait_for(task, TIMEOUT)
    track = report.call(stream.call_id).tracks["inbound"]
    assert track.frames == 3
    assert track.wav_path is not None
    assert read_wav(track.wav_path).samples == _expected_pcm(codec, frames, range(3))
    assert out.getvalue() == ""


async def test_other_events_and_unparseable_ones(nats_server: EmbeddedNats, nc: Client) -> None:
    opts = TapOptions(nats_server.url, calls=1, quiet=True)
    task = await _start_tap(opts, io.StringIO())
    stream = FakeGatewayStream(nc, parse_codec("PCMU"), ("inbound",))
    await stream.started()
    await stream.event("dtmf", digit="5", duration=200)
    await stream.event("mark", name="m1")
    await nc.publish("events.nobody", b"not json")
    await stream.stopped({"inbound": 0})
    report = await asyncio.wait_for(task, TIMEOUT)
    call = report.call(stream.call_id)
    assert [e["type"] for e in call.events] == ["started", "dtmf", "mark", "stopped"]
    assert report.unmatched_events == [{"subject": "events.nobody", "raw": "not json"}]
    assert call.tracks == {}
    with pytest.raises(KeyError):
        report.call("unknown")


async def test_duration_ends_an_idle_tap_and_stop_event_ends_it_early(nats_server: EmbeddedNats) -> None:
    report = await asyncio.wait_for(tap(TapOptions(nats_server.url, duration=0.2, quiet=True), io.StringIO()), TIMEOUT)
    assert report.calls == []
    assert report.elapsed >= 0.2

    stop = asyncio.Event()
    ready = asyncio.Event()
    task = asyncio.create_task(tap(TapOptions(nats_server.url, quiet=True), io.StringIO(), ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), TIMEOUT)
    stop.set()
    report = await asyncio.wait_for(task, TIMEOUT)
    assert report.stopped == 0


async def test_unfinished_calls_get_their_wav_at_exit(nats_server: EmbeddedNats, nc: Client, tmp_path: Path) -> None:
    codec = parse_codec("L16@16000")
    stop = asyncio.Event()
    ready = asyncio.Event()
    opts = TapOptions(nats_server.url, wav_dir=tmp_path, quiet=True)
    task = asyncio.create_task(tap(opts, io.StringIO(), ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), TIMEOUT)
    stream = FakeGatewayStream(nc, codec, ("inbound",))
    frames = stream.frames("inbound", 4, seed=9)
    await stream.started()
    for seq in (1, 2, 3, 4):
        await stream.audio("inbound", seq, frames[seq - 1])
    # A request through the same connection proves the server has routed everything before it.
    sub = await nc.subscribe("probe")
    await nc.publish("probe", b"")
    await sub.next_msg(timeout=TIMEOUT)
    stop.set()
    report = await asyncio.wait_for(task, TIMEOUT)
    track = report.call(stream.call_id).tracks["inbound"]
    assert track.wav_path == tmp_path / f"{stream.call_id}-inbound.wav"
    assert read_wav(track.wav_path).samples == _expected_pcm(codec, frames, range(4))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamgw")
    tap_module.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_flags() -> None:
    args = _parser().parse_args(
        [
            "tap",
            "--nats-url=nats://h:1",
            "--audio-subject=a.>",
            "--events-subject=e.>",
            "--wav=calls-out",
            "--calls=2",
            "--duration=3",
            "--quiet",
        ]
    )
    assert args.func is tap_module.run_cli
    assert (args.nats_url, args.audio_subject, args.events_subject) == ("nats://h:1", "a.>", "e.>")
    assert (args.wav, args.calls, args.duration, args.quiet) == (Path("calls-out"), 2, 3.0, True)


async def test_cli_runs_against_nats(nats_server: EmbeddedNats) -> None:
    args = _parser().parse_args(["tap", f"--nats-url={nats_server.url}", "--duration=0.2", "--calls=1"])
    out = io.StringIO()
    code = await asyncio.to_thread(args.func, args, out)
    assert code == 1  # --calls 1 was not reached before --duration ran out
    assert "tap: " in out.getvalue()


async def test_jambonz_stereo_tracks_and_exotel_frames_become_their_own_wavs(
    nats_server: EmbeddedNats, nc: Client, tmp_path: Path
) -> None:
    """jambonz stereo reaches the bus as two mono L16 tracks; Exotel's 100 ms frames stay whole (a
    lost one is 100 ms of silence, not 20)."""
    opts = TapOptions(nats_server.url, wav_dir=tmp_path, calls=2, quiet=True)
    task = await _start_tap(opts, io.StringIO())
    jambonz = FakeGatewayStream(nc, parse_codec("L16@48000"), ("inbound", "outbound"), provider="jambonz")
    caller, callee = jambonz.frames("inbound", 10, seed=1), jambonz.frames("outbound", 10, seed=2)
    await jambonz.started()
    for seq in range(1, 11):
        await jambonz.audio("inbound", seq, caller[seq - 1])
        await jambonz.audio("outbound", seq, callee[seq - 1])
    await jambonz.stopped()
    exotel = FakeGatewayStream(nc, parse_codec("L16@8000"), ("inbound",), provider="exotel")
    hundred_ms = speech_like(8000, 5 * 800, seed=3)
    chunks = [exotel.codec.encode(hundred_ms[i * 800 : (i + 1) * 800]) for i in range(5)]
    await exotel.started()
    for seq in (1, 2, 4, 5):  # frame 3 lost on the way
        await exotel.audio("inbound", seq, chunks[seq - 1], ts=100 * seq)
    await exotel.stopped({"inbound": 5})
    report = await asyncio.wait_for(task, TIMEOUT)

    seen = report.call(jambonz.call_id)
    assert seen.provider == "jambonz"
    for track, frames in (("inbound", caller), ("outbound", callee)):
        stats = seen.tracks[track]
        assert stats.codec == "L16/48000" and stats.wav_path is not None
        wav = read_wav(stats.wav_path)
        assert (wav.sample_rate, wav.channels) == (48000, 1)
        assert wav.samples == _expected_pcm(jambonz.codec, frames, range(10))
    stats = report.call(exotel.call_id).tracks["inbound"]
    assert report.call(exotel.call_id).provider == "exotel"
    assert stats.silence_frames == 1 and stats.wav_path is not None
    samples = read_wav(stats.wav_path).samples
    assert len(samples) == 5 * 800
    assert samples[1600:2400] == array("h", [0] * 800)
    assert samples[:1600] == hundred_ms[:1600] and samples[2400:] == hundred_ms[2400:]


async def test_a_codec_the_tools_cannot_decode_is_counted_not_written(
    nats_server: EmbeddedNats, nc: Client, tmp_path: Path
) -> None:
    opts = TapOptions(nats_server.url, wav_dir=tmp_path, calls=1, quiet=True)
    task = await _start_tap(opts, io.StringIO())
    stream = FakeGatewayStream(nc, parse_codec("L16@16000"), ("inbound",), provider="jambonz")
    await stream.started()
    headers = {"Sgw-Seq": "1", "Sgw-Ts": "0", "Sgw-Codec": "OPUS/48000", "Sgw-Stream-Id": stream.stream_id}
    await nc.publish(f"audio.{stream.call_id}.inbound", bytes(2560), headers=headers)
    await stream.stopped({"inbound": 1})
    report = await asyncio.wait_for(task, TIMEOUT)
    track = report.call(stream.call_id).tracks["inbound"]
    assert (track.frames, track.undecodable, track.wav_path) == (1, 1, None)
    assert os.listdir(tmp_path) == []

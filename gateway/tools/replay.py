"""``streamgw replay``: read a finished call back from the JetStream stream of a durable route.

Durability is for this: a consumer that was down during a call catches up afterwards. The call's
messages are read with an ephemeral pull consumer filtered on its subjects (the route's templates
rendered for the call: ``--subject``/``--events-subject``, defaults those of the default route);
its ``started`` events say which streams belong to it and their codec. Audio is put in order per
stream and track by ``Sgw-Seq`` (a copy stored twice, after the stream's duplicate window, is
skipped and counted; a missing number is counted, and is silence in a WAV), and the track is read
off ``Nats-Msg-Id`` (``{stream_id}:{track}:{seq}``, set by every durable route).

Outputs: ``--wav DIR`` writes ``{call_id}-{track}.wav`` (``{call_id}-{stream_id}-{track}.wav``
when the call had several streams), G.711 decoded to 16-bit PCM through :mod:`gateway.audio`;
``--to TEMPLATE`` republishes the frames (``{call_id}``, ``{stream_id}``, ``{track}``) and
``--events-to`` the events, tracks interleaved by ``Sgw-Ts`` and events placed by their time, at
the call's own pace with ``--realtime`` (else as fast as the connection takes them). Republished
messages keep their ``Sgw-*`` headers and ``traceparent``, lose the ``Nats-*`` ones (a copy is a
new message) and gain ``Sgw-Replay: true``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TextIO

import msgspec
import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext

from gateway.audio import CodecError, CodecSpec, WavWriter, parse_codec
from gateway.tools.tap_state import safe_name
from sgw_routes.subjects import DEFAULT_AUDIO_SUBJECT, DEFAULT_EVENTS_SUBJECT, render, validate_template

TRACKS: Final = ("inbound", "outbound")
_PLACEHOLDER: Final = re.compile(r"\{([a-z_]+)\}")
_FETCH: Final = 1000
_FETCH_TIMEOUT: Final = 5.0
_DROPPED_HEADERS: Final = ("Nats-Msg-Id", "Nats-Expected-Stream")
_TARGET_PLACEHOLDERS: Final = ("call_id", "stream_id", "track")


class ReplayError(Exception):
    """The call cannot be replayed."""


class CallNotFound(ReplayError):
    """The stream holds nothing of the call."""


class StreamNotFound(ReplayError):
    """No JetStream stream of that name."""


@dataclass(frozen=True)
class ReplayOptions:
    stream: str
    call_id: str
    nats_url: str = "nats://127.0.0.1:4222"
    track: Literal["inbound", "outbound", "both"] = "both"
    audio_subject: str = DEFAULT_AUDIO_SUBJECT
    """The route's ``spec.target.subject``: the call's audio is read from it."""
    events_subject: str = DEFAULT_EVENTS_SUBJECT
    """The route's ``spec.target.eventsSubject``."""
    wav_dir: Path | None = None
    to: str | None = None
    """Republish the audio here (a subject template: ``{call_id}``, ``{stream_id}``, ``{track}``)."""
    events_to: str | None = None
    """Republish the events here (``{call_id}``, ``{stream_id}``)."""
    realtime: bool = False
    """Republish at the call's own pace (``Sgw-Ts``), not as fast as possible."""

    def __post_init__(self) -> None:
        for template in (self.to, self.events_to):
            if template is not None:
                validate_template(template, allowed=_TARGET_PLACEHOLDERS)


@dataclass(frozen=True, slots=True)
class Frame:
    seq: int
    ts: int
    payload: bytes
    headers: dict[str, str]


@dataclass
class ReplayedTrack:
    stream_id: str
    track: str
    codec: str
    frames: list[Frame] = field(default_factory=list)
    """In ``Sgw-Seq`` order, each number once."""
    missing: int = 0
    duplicates: int = 0
    wav: Path | None = None
    wav_samples: int = 0

    @property
    def seconds(self) -> float:
        return (self.frames[-1].ts - self.frames[0].ts) / 1000 + 0.02 if self.frames else 0.0


@dataclass
class ReplayReport:
    call_id: str
    stream: str
    tracks: list[ReplayedTrack]
    events: list[dict[str, Any]]
    republished: int = 0
    elapsed: float = 0.0

    def track(self, track: str, stream_id: str | None = None) -> ReplayedTrack:
        for t in self.tracks:
            if t.track == track and (stream_id is None or t.stream_id == stream_id):
                return t
        raise KeyError(track)


# -- reading the call ----------------------------------------------------------------------------


def subject_filter(template: str, call_id: str, track: str = "*") -> str:
    """The template rendered for one call (as the gateway renders it); every token that depends
    on something else the call does not fix becomes ``*``."""
    tokens = []
    for token in template.split("."):
        names = _PLACEHOLDER.findall(token)
        if not names or set(names) == {"call_id"}:
            tokens.append(render(token, {"call_id": call_id}))
        elif token == "{track}" and track != "*":
            tokens.append(track)
        else:
            tokens.append("*")
    return ".".join(tokens)


async def _fetch_all(js: JetStreamContext, stream: str, subject: str) -> list[Msg]:
    """Every message of ``stream`` on ``subject``, in stream order (an ephemeral pull consumer)."""
    name = f"sgw-replay-{uuid.uuid4().hex[:12]}"
    config = ConsumerConfig(
        name=name,
        filter_subject=subject,
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
        inactive_threshold=60.0,
        mem_storage=True,
    )
    info = await js.add_consumer(stream, config)
    out: list[Msg] = []
    try:
        pending = int(info.num_pending or 0)
        if not pending:
            return out
        sub = await js.pull_subscribe_bind(name, stream=stream)
        while pending > 0:
            batch = await sub.fetch(min(pending, _FETCH), timeout=_FETCH_TIMEOUT)
            out.extend(batch)
            pending = int(batch[-1].metadata.num_pending or 0)
        await sub.unsubscribe()
    finally:
        with contextlib.suppress(nats.js.errors.NotFoundError):  # expired already: it was ephemeral
            await js.delete_consumer(stream, name)
    return out


def _track_of(headers: dict[str, str], subject: str) -> tuple[str, str]:
    """(stream id, track) from ``Nats-Msg-Id``, else from ``Sgw-Stream-Id`` and the last token."""
    msg_id = headers.get("Nats-Msg-Id", "")
    parts = msg_id.rsplit(":", 2)
    if len(parts) == 3 and parts[1] in TRACKS:
        return parts[0], parts[1]
    return headers.get("Sgw-Stream-Id", ""), subject.rsplit(".", 1)[-1]


def _int(text: str | None, default: int = 0) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


async def read_call(js: JetStreamContext, opts: ReplayOptions) -> ReplayReport:
    """The call's events and its audio in order, per stream and track."""
    events: list[dict[str, Any]] = []
    codecs: dict[str, str] = {}
    for msg in await _fetch_all(js, opts.stream, subject_filter(opts.events_subject, opts.call_id)):
        try:
            body = msgspec.json.decode(msg.data)
        except msgspec.DecodeError:
            continue
        if not isinstance(body, dict) or body.get("call_id") != opts.call_id:
            continue
        events.append(body)
        if body.get("type") == "started" and isinstance(body.get("stream_id"), str):
            codecs[body["stream_id"]] = str(body.get("codec") or "")
    wanted = TRACKS if opts.track == "both" else (opts.track,)
    tracks: dict[tuple[str, str], dict[int, Frame]] = {}
    duplicates: dict[tuple[str, str], int] = {}
    for msg in await _fetch_all(js, opts.stream, subject_filter(opts.audio_subject, opts.call_id)):
        headers = dict(msg.headers or {})
        stream_id, track = _track_of(headers, msg.subject)
        if track not in wanted or (codecs and stream_id not in codecs):
            continue  # another track, or another call's stream on a subject without {call_id}
        key = (stream_id, track)
        frames = tracks.setdefault(key, {})
        seq = _int(headers.get("Sgw-Seq"))
        if seq in frames:
            duplicates[key] = duplicates.get(key, 0) + 1
            continue
        frames[seq] = Frame(seq, _int(headers.get("Sgw-Ts")), msg.data, headers)
    if not tracks and not events:
        raise CallNotFound(f"stream {opts.stream} holds nothing of call {opts.call_id} on {opts.audio_subject}")
    replayed = []
    for (stream_id, track), by_seq in sorted(tracks.items(), key=lambda kv: (kv[0][0], TRACKS.index(kv[0][1]))):
        ordered = [by_seq[seq] for seq in sorted(by_seq)]
        # The frame's own Sgw-Codec first: a route's transform makes it differ from the provider's.
        codec = ordered[0].headers.get("Sgw-Codec") or codecs.get(stream_id, "")
        missing = ordered[-1].seq - len(ordered)  # Sgw-Seq counts from 1
        replayed.append(ReplayedTrack(stream_id, track, codec, ordered, missing, duplicates.get((stream_id, track), 0)))
    return ReplayReport(opts.call_id, opts.stream, replayed, events)


# -- outputs -------------------------------------------------------------------------------------


def write_wavs(report: ReplayReport, directory: Path) -> None:
    """One WAV per stream and track; a missing ``Sgw-Seq`` becomes a frame of silence."""
    directory.mkdir(parents=True, exist_ok=True)
    several = len({t.stream_id for t in report.tracks}) > 1
    for track in report.tracks:
        try:
            codec: CodecSpec = parse_codec(track.codec)
        except CodecError:
            continue  # a codec the tools cannot decode: no WAV (the report says so)
        middle = f"-{safe_name(track.stream_id)}" if several else ""
        path = directory / f"{safe_name(report.call_id)}{middle}-{safe_name(track.track)}.wav"
        with WavWriter(path, codec.sample_rate) as wav:
            previous = 0
            for frame in track.frames:
                if frame.seq > previous + 1:
                    wav.write_silence((frame.seq - previous - 1) * codec.samples_per_frame)
                wav.write_pcm16le(codec.to_pcm16le(frame.payload))
                previous = frame.seq
            track.wav_samples = wav.samples_written
        track.wav = path


def _timeline(report: ReplayReport, opts: ReplayOptions) -> list[tuple[float, int, str, bytes, dict[str, str]]]:
    """(offset in seconds, order, subject, data, headers): tracks interleaved by ``Sgw-Ts``,
    events by their time after the stream's ``started``."""
    items: list[tuple[float, int, str, bytes, dict[str, str]]] = []
    last_audio = 0.0
    if opts.to is not None:
        for track in report.tracks:
            values = {"call_id": report.call_id, "stream_id": track.stream_id, "track": track.track}
            subject = render(opts.to, values)
            rank = TRACKS.index(track.track)
            for frame in track.frames:
                headers = {k: v for k, v in frame.headers.items() if k not in _DROPPED_HEADERS}
                headers["Sgw-Replay"] = "true"
                offset = frame.ts / 1000
                last_audio = max(last_audio, offset)
                items.append((offset, 1 + rank, subject, frame.payload, headers))
    if opts.events_to is not None:
        starts = {e.get("stream_id"): e.get("ts") for e in report.events if e.get("type") == "started"}
        for event in report.events:
            start, ts = starts.get(event.get("stream_id")), event.get("ts")
            offset = ts - start if isinstance(ts, float | int) and isinstance(start, float | int) else 0.0
            kind = str(event.get("type") or "")
            if kind == "stopped":
                offset = max(offset, last_audio)
            order = 0 if kind == "started" else 3
            values = {"call_id": report.call_id, "stream_id": str(event.get("stream_id") or "")}
            headers = {"Sgw-Event": kind, "Sgw-Replay": "true"}
            items.append((max(0.0, offset), order, render(opts.events_to, values), msgspec.json.encode(event), headers))
    items.sort(key=lambda item: (item[0], item[1]))
    return items


async def republish(nc: Client, report: ReplayReport, opts: ReplayOptions) -> int:
    """Publish the call again, in order; at its own pace with ``realtime``."""
    loop = asyncio.get_running_loop()
    begun = loop.time()
    sent = 0
    for offset, _, subject, data, headers in _timeline(report, opts):
        if opts.realtime:
            delay = begun + offset - loop.time()
            if delay > 0:
                await nc.flush()
                await asyncio.sleep(delay)  # pacing is what --realtime asks for
        await nc.publish(subject, data, headers=headers)
        sent += 1
    await nc.flush()
    return sent


async def replay(opts: ReplayOptions) -> ReplayReport:
    """Read the call, then write WAVs and/or republish it, as ``opts`` asks."""
    began = time.monotonic()
    nc = await nats.connect(opts.nats_url, connect_timeout=5, max_reconnect_attempts=2)
    try:
        js = nc.jetstream()
        try:
            report = await read_call(js, opts)
        except nats.js.errors.NotFoundError:
            raise StreamNotFound(f"no JetStream stream {opts.stream!r}") from None
        if opts.wav_dir is not None:
            write_wavs(report, opts.wav_dir)
        if opts.to is not None or opts.events_to is not None:
            report.republished = await republish(nc, report, opts)
    finally:
        await nc.close()
    report.elapsed = time.monotonic() - began
    return report


def summary(report: ReplayReport) -> str:
    lines = [f"call {report.call_id} in stream {report.stream}: {len(report.events)} events"]
    for t in report.tracks:
        line = (
            f"  {t.stream_id} {t.track:<8} {t.codec:<10} {len(t.frames):>6} frames  {t.seconds:7.2f} s  "
            f"missing {t.missing}  stored twice {t.duplicates}"
        )
        if t.wav is not None:
            line += f"  -> {t.wav} ({t.wav_samples} samples)"
        lines.append(line)
    if report.republished:
        lines.append(f"republished {report.republished} messages in {report.elapsed:.2f} s")
    return "\n".join(lines)


# -- command line --------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``replay`` sub-command."""
    parser = subparsers.add_parser(
        "replay",
        help="read a finished call back from a durable route's JetStream stream: WAVs, or republish",
        description="Read a call from a JetStream stream in order; write WAVs and/or republish it.",
    )
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--stream", required=True, help="the route's spec.target.jetstream.stream")
    parser.add_argument("--call", required=True, dest="call_id", help="the call id (callSid, call_control_id, ...)")
    parser.add_argument("--track", choices=("inbound", "outbound", "both"), default="both")
    parser.add_argument(
        "--subject", default=DEFAULT_AUDIO_SUBJECT, help="the route's target.subject (default %(default)s)"
    )
    parser.add_argument(
        "--events-subject",
        default=DEFAULT_EVENTS_SUBJECT,
        help="the route's target.eventsSubject (default %(default)s)",
    )
    parser.add_argument("--wav", type=Path, metavar="DIR", help="write {call_id}-{track}.wav here")
    parser.add_argument("--to", metavar="SUBJECT", help="republish the audio here ({call_id} {stream_id} {track})")
    parser.add_argument("--events-to", metavar="SUBJECT", help="republish the events here ({call_id} {stream_id})")
    parser.add_argument("--realtime", action="store_true", help="republish at the call's own pace (Sgw-Ts)")
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """0 when replayed; 1 when the call is not in the stream; 2 when NATS or the stream is unusable."""
    try:
        opts = ReplayOptions(
            stream=args.stream,
            call_id=args.call_id,
            nats_url=args.nats_url,
            track=args.track,
            audio_subject=args.subject,
            events_subject=args.events_subject,
            wav_dir=args.wav,
            to=args.to,
            events_to=args.events_to,
            realtime=args.realtime,
        )
        report = asyncio.run(replay(opts))
    except ValueError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    except ReplayError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, CallNotFound) else 2
    except (OSError, nats.errors.Error) as exc:
        print(f"replay: cannot use NATS at {args.nats_url}: {exc!r}", file=sys.stderr)
        return 2
    print(summary(report), file=out or sys.stdout)
    return 0

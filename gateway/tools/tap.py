"""``streamgw tap``: subscribe to the gateway's audio and events on NATS and show what arrives.

A consumer's-eye check of the whole path: it demultiplexes frames by ``Sgw-Stream-Id`` and
track (the last subject token), counts frames, bytes, ``Sgw-Seq`` gaps, duplicates and
reordering, estimates latency (see :data:`LATENCY_HELP`), prints a live plain-text table (with
``started.provider``) and can write one WAV per call and track, decoded per ``Sgw-Codec``: G.711,
or L16 at 8 to 48 kHz, which covers every provider's audio (jambonz stereo arrives already split
into its two tracks); frames in a codec the tools cannot decode are counted, not written. The
bookkeeping lives in :mod:`gateway.tools.tap_state`; this module is the NATS loop, the report and
the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from gateway.audio import parse_codec
from gateway.tools.tap_state import (
    CallTapReport,
    SeqWavSink,
    StreamState,
    format_table,
    safe_name,
)

LATENCY_HELP = (
    "lat ms = now - (started.ts + Sgw-Ts/1000): started.ts is when the gateway saw the provider's"
    " start and Sgw-Ts is the provider's media clock, so this is capture-to-consumer delay plus the"
    " frame's 20 ms packetisation and any clock offset between the gateway's host and this one."
    " A value that keeps rising means the pipeline is falling behind."
)
_DEFAULT_CODEC = "PCMU/8000"
_SUBSCRIBE_TIMEOUT = 10.0


@dataclass(frozen=True)
class TapOptions:
    nats_url: str = "nats://127.0.0.1:4222"
    audio_subject: str = "audio.>"
    events_subject: str = "events.>"
    wav_dir: Path | None = None
    """Write ``{call_id}-{track}.wav`` here, finalised at the stream's ``stopped`` event."""
    calls: int | None = None
    """Exit once this many ``stopped`` events have arrived and their files are finalised."""
    duration: float | None = None
    """Exit after this many seconds regardless."""
    refresh: float = 1.0
    """Seconds between live table prints."""
    quiet: bool = False
    """No live table and no per-event lines; only the final summary."""
    timeline: Literal["seq", "ts"] = "seq"
    """How WAV audio is placed. ``seq``: in ``Sgw-Seq`` order, silence for a missing number, so
    the file shows exactly what the bus delivered (provider duplicates and reordering included,
    since the gateway numbers what it forwards). ``ts``: by ``Sgw-Ts`` slot, so provider drops
    become silence, duplicates are written once and reordered frames land in place."""
    stop_grace: float = 1.0
    """After ``stopped``, how long to keep waiting for straggling audio (events and audio travel
    on different subjects, so their relative order at the consumer is not guaranteed)."""


@dataclass
class TapReport:
    calls: list[CallTapReport]
    """One entry per stream seen, in order of first appearance."""
    stopped: int
    events: int
    unmatched_events: list[dict[str, Any]]
    """Events with no stream or call id the tap could attach them to (or that were not JSON)."""
    elapsed: float

    def call(self, call_id: str) -> CallTapReport:
        """The (first) stream of ``call_id``; KeyError if the tap never saw it."""
        for report in self.calls:
            if report.call_id == call_id:
                return report
        raise KeyError(call_id)


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


class _Tap:
    """The subscriber callbacks and the state they share."""

    def __init__(self, opts: TapOptions, out: TextIO) -> None:
        self.opts = opts
        self.out = out
        self.streams: dict[str, StreamState] = {}
        self.unmatched: list[dict[str, Any]] = []
        self.stopped = 0
        self.events = 0
        self.changed = asyncio.Event()
        """Set when something the main loop waits for may have happened (an event, late audio)."""
        self._wav_names: set[str] = set()
        self._loop = asyncio.get_running_loop()

    def _stream(self, stream_id: str, call_id: str) -> StreamState:
        stream = self.streams.get(stream_id)
        if stream is None:
            stream = self.streams[stream_id] = StreamState(stream_id=stream_id, call_id=call_id)
        return stream

    async def on_audio(self, msg: Msg) -> None:
        headers = msg.headers or {}
        tokens = msg.subject.split(".")
        track = tokens[-1]
        # The default template is audio.{call_id}.{track}; with a custom template the header
        # still identifies the stream and the call id arrives with the started event.
        call_guess = tokens[1] if len(tokens) >= 3 else msg.subject
        stream = self._stream(headers.get("Sgw-Stream-Id") or call_guess, call_guess)
        codec_label = headers.get("Sgw-Codec") or self._started_codec(stream)
        ts = _int(headers.get("Sgw-Ts"))
        started_ts = stream.started_ts
        latency = None
        if ts is not None and started_ts is not None:
            latency = (time.time() - (started_ts + ts / 1000.0)) * 1000.0
        state = stream.track(track)
        seq = state.observe(_int(headers.get("Sgw-Seq")), codec_label, msg.data, latency)
        stream.last_audio_at = self._loop.time()
        if self.opts.wav_dir is not None:
            codec = state.codec if state.codec_label is not None else parse_codec(_DEFAULT_CODEC)
            if codec is None:
                state.undecodable += 1  # a codec the tools cannot decode (OPUS, L16/64000...): no WAV
                return
            slot = state.base_seq or seq
            if self.opts.timeline == "ts" and ts is not None:
                slot = state.ts_slot(ts, codec, len(msg.data))
            if state.sink is None and not stream.finalized:
                part = self.opts.wav_dir / f".{safe_name(stream.stream_id)}-{safe_name(track)}.part.wav"
                state.sink = SeqWavSink(part, codec, slot)
            if state.sink is not None:
                state.sink.add(seq if self.opts.timeline == "seq" or ts is None else slot, codec, msg.data)
        if stream.stopped is not None:
            self.changed.set()

    def _started_codec(self, stream: StreamState) -> str | None:
        codec = stream.started.get("codec") if stream.started else None
        return codec if isinstance(codec, str) else None

    async def on_event(self, msg: Msg) -> None:
        self.events += 1
        try:
            body = json.loads(msg.data)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.unmatched.append({"subject": msg.subject, "raw": msg.data.decode(errors="replace")})
            return
        kind = body.get("type")
        stream_id, call_id = body.get("stream_id"), body.get("call_id")
        if not isinstance(call_id, str):
            tokens = msg.subject.split(".")
            call_id = tokens[1] if len(tokens) >= 2 else None
        stream: StreamState | None = None
        if isinstance(stream_id, str):
            stream = self._stream(stream_id, call_id or stream_id)
        elif call_id is not None:
            # status events (from /status callbacks) may know only the call.
            stream = next((s for s in reversed(self.streams.values()) if s.call_id == call_id), None)
        if stream is None:
            self.unmatched.append(body)
            return
        stream.events.append(body)
        if kind == "started":
            stream.started = body
            stream.call_id = call_id or stream.call_id
            control_id, provider = body.get("control_id"), body.get("provider")
            stream.control_id = control_id if isinstance(control_id, str) else None
            stream.provider = provider if isinstance(provider, str) else None
        elif kind == "stopped":
            stream.stopped = body
            stream.stopped_at = self._loop.time()
            self.stopped += 1
        if not self.opts.quiet:
            self.out.write(f"event {kind} call={stream.call_id} {_event_detail(body)}\n")
        self.changed.set()

    def next_deadline(self) -> float | None:
        """When the earliest stopped stream's grace for straggling audio runs out."""
        deadlines = [self._grace_end(s) for s in self.streams.values() if self._pending(s)]
        return min(deadlines) if deadlines else None

    def _pending(self, stream: StreamState) -> bool:
        return stream.stopped is not None and not stream.finalized

    def _grace_end(self, stream: StreamState) -> float:
        assert stream.stopped_at is not None
        return max(stream.stopped_at, stream.last_audio_at or 0.0) + self.opts.stop_grace

    def finalize_due(self, now: float) -> None:
        for stream in list(self.streams.values()):
            if self._pending(stream) and (stream.audio_complete() or now >= self._grace_end(stream)):
                self.finalize(stream)

    def finalize(self, stream: StreamState) -> None:
        stream.finalized = True
        for name, state in stream.tracks.items():
            sink = state.sink
            if sink is None or sink.closed:
                continue
            sink.close()
            call, track = safe_name(stream.call_id), safe_name(name)
            final = f"{call}-{track}.wav"
            if final in self._wav_names:  # a second stream of the same call
                final = f"{call}-{safe_name(stream.stream_id)}-{track}.wav"
            self._wav_names.add(final)
            sink.path = sink.path.replace(sink.path.with_name(final))
            if not self.opts.quiet:
                self.out.write(f"wrote {sink.path} ({sink.samples} samples)\n")

    def finalize_all(self) -> None:
        for stream in self.streams.values():
            if not stream.finalized:
                self.finalize(stream)

    @property
    def done(self) -> bool:
        calls = self.opts.calls
        if calls is None or self.stopped < calls:
            return False
        return not any(self._pending(s) for s in self.streams.values())

    def print_table(self, window: float | None, *, everything: bool = False) -> None:
        shown = [s for s in self.streams.values() if everything or not s.finalized]
        finished = len(self.streams) - len(shown)
        self.out.write(format_table(shown, window))
        if finished:
            self.out.write(f"({finished} finished streams not shown)\n")
        for stream in shown:
            for state in stream.tracks.values():
                state.window_frames = 0

    def report(self, elapsed: float) -> TapReport:
        return TapReport(
            calls=[s.report() for s in self.streams.values()],
            stopped=self.stopped,
            events=self.events,
            unmatched_events=list(self.unmatched),
            elapsed=elapsed,
        )


def _event_detail(body: dict[str, Any]) -> str:
    kind = body.get("type")
    keys: tuple[str, ...] = ()
    if kind == "started":
        keys = ("provider", "control_id", "route", "codec", "tracks")
    elif kind == "stopped":
        keys = ("reason", "tracks")
    elif kind in ("dtmf", "mark", "error", "status"):
        keys = tuple(k for k in body if k not in ("type", "call_id", "stream_id", "ts", "traceparent"))
    return " ".join(f"{k}={json.dumps(body[k], separators=(',', ':'))}" for k in keys if k in body)


async def tap(
    opts: TapOptions,
    out: TextIO,
    *,
    ready: asyncio.Event | None = None,
    stop: asyncio.Event | None = None,
) -> TapReport:
    """Subscribe and watch until ``opts.calls`` streams stopped, ``opts.duration``, or ``stop``.

    ``ready`` is set once both subscriptions are registered with the server, so a caller can
    start publishing without racing the tap. WAV files of unfinished streams are finalised on
    the way out, also when the task is cancelled.
    """
    loop = asyncio.get_running_loop()
    state = _Tap(opts, out)
    if opts.wav_dir is not None:
        opts.wav_dir.mkdir(parents=True, exist_ok=True)
    began = loop.time()
    nc = await nats.connect(opts.nats_url, name="sgw-tap", connect_timeout=5, drain_timeout=5)
    try:
        await nc.subscribe(opts.audio_subject, cb=state.on_audio)
        await nc.subscribe(opts.events_subject, cb=state.on_event)
        await _subscriptions_live(nc)
        if not opts.quiet:
            out.write(f"tap: {opts.nats_url} audio={opts.audio_subject} events={opts.events_subject}\n")
            out.write(f"tap: {LATENCY_HELP}\n")
        if ready is not None:
            ready.set()
        await _watch(state, opts, began, stop)
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()  # delivers what is already buffered before the files are closed
        state.finalize_all()
    elapsed = loop.time() - began
    if not opts.quiet:
        state.print_table(None, everything=True)
    return state.report(elapsed)


async def _subscriptions_live(nc: NatsClient) -> None:
    """Return once the server has registered every subscription made so far on ``nc``.

    ``flush()`` is not enough: nats-py 2.16 writes its PING straight to the socket while SUB
    commands may still sit in the client's pending buffer, so the PONG can come back before
    the server knows the subscriptions. A message to our own inbox travels through that same
    buffer behind the SUBs, so receiving it proves they were processed.
    """
    inbox = nc.new_inbox()
    probe = await nc.subscribe(inbox)
    await nc.publish(inbox, b"")
    await probe.next_msg(timeout=_SUBSCRIBE_TIMEOUT)
    await probe.unsubscribe()


async def _watch(state: _Tap, opts: TapOptions, began: float, stop: asyncio.Event | None) -> None:
    loop = asyncio.get_running_loop()
    window_start = began
    while not state.done and not (stop is not None and stop.is_set()):
        wake = [window_start + opts.refresh]
        grace = state.next_deadline()
        if grace is not None:
            wake.append(grace)
        if opts.duration is not None:
            wake.append(began + opts.duration)
        waiters = [asyncio.ensure_future(state.changed.wait())]
        if stop is not None:
            waiters.append(asyncio.ensure_future(stop.wait()))
        _, pending = await asyncio.wait(
            waiters, timeout=max(0.0, min(wake) - loop.time()), return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in pending:
            waiter.cancel()
        state.changed.clear()
        now = loop.time()
        state.finalize_due(now)
        if now - window_start >= opts.refresh:
            if not opts.quiet:
                state.print_table(now - window_start)
            window_start = now
        if opts.duration is not None and now - began >= opts.duration:
            return


# ---------------------------------------------------------------------------------------------
# Command line


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``tap`` sub-command."""
    parser = subparsers.add_parser(
        "tap",
        help="subscribe to the gateway's audio and events on NATS and show what arrives",
        description="Watch audio.> and events.>: per-call frame counts, gaps, latency; write WAVs.",
        epilog=LATENCY_HELP,
    )
    parser.add_argument("--nats-url", default="nats://127.0.0.1:4222")
    parser.add_argument("--audio-subject", default="audio.>")
    parser.add_argument("--events-subject", default="events.>")
    parser.add_argument("--wav", type=Path, metavar="DIR", help="write {call_id}-{track}.wav here")
    parser.add_argument("--calls", type=int, help="exit after this many stopped events")
    parser.add_argument("--duration", type=float, help="exit after this many seconds")
    parser.add_argument("--refresh", type=float, default=1.0, help="seconds between table prints")
    parser.add_argument("--quiet", action="store_true", help="only the final summary")
    parser.add_argument(
        "--timeline",
        choices=("seq", "ts"),
        default="seq",
        help="place WAV audio by Sgw-Seq (what the bus delivered) or by Sgw-Ts (the media clock)",
    )
    parser.set_defaults(func=run_cli)


def run_cli(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """0 on a clean exit; 1 when ``--calls`` was not reached; 2 when NATS is unreachable."""
    opts = TapOptions(
        nats_url=args.nats_url,
        audio_subject=args.audio_subject,
        events_subject=args.events_subject,
        wav_dir=args.wav,
        calls=args.calls,
        duration=args.duration,
        refresh=args.refresh,
        quiet=args.quiet,
        timeline=args.timeline,
    )
    try:
        report = asyncio.run(_cli_main(opts, out))
    except (OSError, nats.errors.Error) as exc:
        print(f"tap: cannot use NATS at {opts.nats_url}: {exc!r}", file=sys.stderr)
        return 2
    if opts.calls is not None and report.stopped < opts.calls:
        return 1
    return 0


async def _cli_main(opts: TapOptions, out: TextIO) -> TapReport:
    # Ctrl-C or SIGTERM ends the watch cleanly, so the WAV headers are still written.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    return await tap(opts, out, stop=stop)

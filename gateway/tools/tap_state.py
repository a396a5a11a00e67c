"""The tap's bookkeeping: per stream and track counters, ``Sgw-Seq`` ordering and WAV placement.

Pure (no NATS, no clocks read here: callers pass ``now``), so :mod:`gateway.tools.tap` stays a
thin subscriber loop and this logic is testable on its own. Audio is demultiplexed by
``Sgw-Stream-Id`` and track. Gaps, duplicates and reordering are judged on ``Sgw-Seq``, the
gateway's own contiguous per-track counter, so any gap here is audio the bus lost between the
gateway and the tap. WAV output is placed in ``Sgw-Seq`` order through a small reorder window;
a missing frame becomes one frame of silence so the file's timeline stays true.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.audio import CodecSpec, WavWriter, parse_codec

REORDER_WINDOW = 50
"""Frames held back waiting for a missing ``Sgw-Seq`` (one second at 20 ms) before it is
declared lost and filled with silence."""

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass
class TrackReport:
    """What the tap saw of one track of one stream."""

    track: str
    codec: str | None
    frames: int
    """Messages received, duplicates included."""
    bytes: int
    gaps: int
    """``Sgw-Seq`` numbers never received between the first expected one and the highest."""
    duplicates: int
    reordered: int
    """Frames that arrived after a higher ``Sgw-Seq`` had already arrived."""
    first_seq: int | None
    last_seq: int | None
    latency_ms_avg: float | None
    latency_ms_max: float | None
    wav_path: Path | None = None
    wav_samples: int = 0
    silence_frames: int = 0
    """Frames of silence written into the WAV for ``Sgw-Seq`` numbers that never arrived."""
    late_frames: int = 0
    """Frames that arrived too late for the WAV (after their slot was filled or the file closed)."""
    undecodable: int = 0
    """Frames left out of the WAV because the tools cannot decode their ``Sgw-Codec``."""


@dataclass
class CallTapReport:
    """One stream (normally one per call): its lifecycle events and its tracks."""

    call_id: str
    stream_id: str
    control_id: str | None
    provider: str | None
    """``started.provider``: who streamed it (``signalwire``, ``twilio``, ``telnyx``, ``vonage``...)."""
    started: dict[str, Any] | None
    stopped: dict[str, Any] | None
    events: list[dict[str, Any]]
    tracks: dict[str, TrackReport]


class SeqWavSink:
    """Writes one track's audio to a WAV in ``Sgw-Seq`` order, filling holes with silence."""

    def __init__(self, path: Path, codec: CodecSpec, next_seq: int) -> None:
        self.path = path
        self.codec = codec
        self.next_seq = next_seq
        self.silence_frames = 0
        self.late_frames = 0
        self._writer = WavWriter(path, codec.sample_rate)
        self._pending: dict[int, tuple[CodecSpec, bytes]] = {}
        self._frame_samples = 0
        """Samples per frame, from the first frame that arrives (20 ms for most providers, 100 ms
        for Exotel): the length of silence that stands in for a lost frame."""
        self.closed = False

    @property
    def samples(self) -> int:
        return self._writer.samples_written

    def add(self, seq: int, codec: CodecSpec, payload: bytes) -> None:
        if self.closed or seq < self.next_seq or seq in self._pending:
            self.late_frames += self.closed or seq < self.next_seq
            return
        self._pending[seq] = (codec, payload)
        if not self._frame_samples:
            self._frame_samples = len(payload) // codec.bytes_per_sample or codec.samples_per_frame
        self._flush_ready()
        if len(self._pending) > REORDER_WINDOW:
            self._skip_to(min(self._pending))
            self._flush_ready()

    def close(self) -> None:
        """Write whatever is held back (holes become silence) and finalise the header."""
        if self.closed:
            return
        while self._pending:
            self._skip_to(min(self._pending))
            self._flush_ready()
        self._writer.close()
        self.closed = True

    def _flush_ready(self) -> None:
        while self.next_seq in self._pending:
            codec, payload = self._pending.pop(self.next_seq)
            pcm = codec.to_pcm16le(payload)
            self._frame_samples = len(pcm) // 2 or self._frame_samples
            self._writer.write_pcm16le(pcm)
            self.next_seq += 1

    def _skip_to(self, seq: int) -> None:
        missing = seq - self.next_seq
        if missing > 0:
            self._writer.write_silence(missing * self._frame_samples)
            self.silence_frames += missing
            self.next_seq = seq


class TrackState:
    """Counters for one track; owns the track's WAV sink when the tap writes files."""

    def __init__(self, track: str, expect_seq_from_one: bool) -> None:
        self.track = track
        self.codec_label: str | None = None
        self.codec: CodecSpec | None = None
        self.frames = 0
        self.bytes = 0
        self.duplicates = 0
        self.reordered = 0
        self.base_seq: int | None = 1 if expect_seq_from_one else None
        self.max_seq: int | None = None
        self._seen: set[int] = set()
        self._arrivals = 0
        self.window_frames = 0
        self.latency_last: float | None = None
        self._latency_sum = 0.0
        self._latency_count = 0
        self.latency_max: float | None = None
        self.sink: SeqWavSink | None = None
        self.undecodable = 0
        self._frame_ms: int | None = None

    @property
    def gaps(self) -> int:
        if self.max_seq is None or self.base_seq is None:
            return 0
        return self.max_seq - self.base_seq + 1 - len(self._seen)

    def observe(self, seq: int | None, codec_label: str | None, payload: bytes, latency_ms: float | None) -> int:
        """Count one frame; returns its ``Sgw-Seq`` (the arrival count if the header is absent)."""
        self._arrivals += 1
        if seq is None:
            seq = self._arrivals
        self.frames += 1
        self.window_frames += 1
        self.bytes += len(payload)
        if codec_label is not None and codec_label != self.codec_label:
            self.codec_label = codec_label
            try:
                self.codec = parse_codec(codec_label)
            except ValueError:
                self.codec = None
        if self.base_seq is None or seq < self.base_seq:
            self.base_seq = seq
        if seq in self._seen:
            self.duplicates += 1
        else:
            if self.max_seq is not None and seq < self.max_seq:
                self.reordered += 1
            self._seen.add(seq)
            self.max_seq = seq if self.max_seq is None else max(self.max_seq, seq)
        if latency_ms is not None:
            self.latency_last = latency_ms
            self._latency_sum += latency_ms
            self._latency_count += 1
            self.latency_max = latency_ms if self.latency_max is None else max(self.latency_max, latency_ms)
        return seq

    def ts_slot(self, ts: int, codec: CodecSpec, payload_bytes: int) -> int:
        """The frame's place on the media clock: ``Sgw-Ts`` over the frame duration."""
        if self._frame_ms is None:
            # Fixed by the first frame, so one odd-sized frame cannot re-grid the whole track.
            samples = payload_bytes // codec.bytes_per_sample
            self._frame_ms = max(1, round(1000 * samples / codec.sample_rate)) if samples else 20
        return ts // self._frame_ms

    @property
    def latency_avg(self) -> float | None:
        return self._latency_sum / self._latency_count if self._latency_count else None

    def report(self) -> TrackReport:
        sink = self.sink
        return TrackReport(
            track=self.track,
            codec=self.codec_label,
            frames=self.frames,
            bytes=self.bytes,
            gaps=self.gaps,
            duplicates=self.duplicates,
            reordered=self.reordered,
            first_seq=self.base_seq,
            last_seq=self.max_seq,
            latency_ms_avg=self.latency_avg,
            latency_ms_max=self.latency_max,
            wav_path=sink.path if sink is not None and sink.closed else None,
            wav_samples=sink.samples if sink is not None else 0,
            silence_frames=sink.silence_frames if sink is not None else 0,
            late_frames=sink.late_frames if sink is not None else 0,
            undecodable=self.undecodable,
        )


@dataclass
class StreamState:
    """One stream: its ids, lifecycle events and tracks."""

    stream_id: str
    call_id: str
    control_id: str | None = None
    provider: str | None = None
    started: dict[str, Any] | None = None
    stopped: dict[str, Any] | None = None
    stopped_at: float | None = None
    last_audio_at: float | None = None
    finalized: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    tracks: dict[str, TrackState] = field(default_factory=dict)

    @property
    def started_ts(self) -> float | None:
        ts = self.started.get("ts") if self.started else None
        return float(ts) if isinstance(ts, int | float) else None

    def track(self, name: str) -> TrackState:
        state = self.tracks.get(name)
        if state is None:
            state = self.tracks[name] = TrackState(name, expect_seq_from_one=self.started is not None)
        return state

    def audio_complete(self) -> bool:
        """Whether every track has at least the frames the ``stopped`` event says were sent."""
        if self.stopped is None:
            return False
        tracks = self.stopped.get("tracks")
        if not isinstance(tracks, dict):
            return False
        for name, stats in tracks.items():
            if not isinstance(stats, dict):
                return False
            frames, dropped = stats.get("frames"), stats.get("dropped", 0)
            if not isinstance(frames, int) or not isinstance(dropped, int):
                return False
            received = self.tracks[name].frames if name in self.tracks else 0
            if received < frames - dropped:
                return False
        return True

    def report(self) -> CallTapReport:
        return CallTapReport(
            call_id=self.call_id,
            stream_id=self.stream_id,
            control_id=self.control_id,
            provider=self.provider,
            started=self.started,
            stopped=self.stopped,
            events=list(self.events),
            tracks={name: t.report() for name, t in self.tracks.items()},
        )


def safe_name(text: str) -> str:
    """A file-name-safe version of an id (ids are UUIDs or CA/MZ hex, but never trust input)."""
    return _UNSAFE.sub("_", text) or "_"


def format_table(streams: list[StreamState], window: float | None) -> str:
    """The per-stream, per-track table (plain text); ``fps`` over ``window`` seconds, if given."""
    header = (
        f"{'call_id':<36}  {'provider':<10}  {'track':<8}  {'codec':<10}  {'frames':>7}  {'bytes':>9}  {'gaps':>4}  "
        f"{'dups':>4}  {'reord':>5}  {'fps':>5}  {'lat ms last/avg/max':>19}  state"
    )
    lines = [header]
    for stream in streams:
        state = "stopped" if stream.stopped is not None else "live"
        if stream.finalized:
            state = "done"
        provider = (stream.provider or "-")[:10]
        for name in sorted(stream.tracks):
            t = stream.tracks[name]
            fps = f"{t.window_frames / window:>5.1f}" if window else f"{'-':>5}"
            lines.append(
                f"{stream.call_id[:36]:<36}  {provider:<10}  {name:<8}  {(t.codec_label or '-'):<10}  "
                f"{t.frames:>7}  {t.bytes:>9}  {t.gaps:>4}  {t.duplicates:>4}  {t.reordered:>5}  "
                f"{fps}  {_ms(t.latency_last)}/{_ms(t.latency_avg)}/{_ms(t.latency_max):<6}  "
                f"{state}"
            )
        if not stream.tracks:
            lines.append(f"{stream.call_id[:36]:<36}  {provider:<10}  {'-':<8}  (no audio yet)  {state}")
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return f"{value:6.0f}" if value is not None else f"{'-':>6}"

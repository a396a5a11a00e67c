"""The provider side of the media-stream wire, for the simulator: messages, counters and faults.

Builds the exact JSON text frames SignalWire and Twilio send (docs/protocols.md sections 1.3, 2.6 and
12.1) and plans a call's media frames: ``sequenceNumber`` +1 per message of any type (``start``
is 1), ``chunk`` and ``timestamp`` per track, both tracks interleaved per 20 ms tick, and the
injected faults (drop, duplicate, reorder) applied per track from a seeded RNG. Pure: no sockets,
no clocks, so the simulator's wire format can be tested without a server.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid
from base64 import b64encode
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Literal

from gateway.audio import FRAME_MS, CodecSpec, Signal, SpeechLike, Tone

Dialect = Literal["signalwire", "twilio"]
Track = Literal["inbound", "outbound"]

_VERSION: Final[dict[Dialect, str]] = {"signalwire": "0.2.0", "twilio": "1.0.0"}
# The providers' own examples disagree on the first media timestamp: SignalWire's starts at 0,
# Twilio's at 20 (the end of the first 20 ms). Each dialect follows its own example.
_FIRST_TIMESTAMP: Final[dict[Dialect, int]] = {"signalwire": 0, "twilio": FRAME_MS}


def _compact(message: Mapping[str, object]) -> str:
    return json.dumps(message, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class CallIds:
    """The provider's identifiers for one stream."""

    call_id: str
    stream_id: str
    account_id: str

    @classmethod
    def new(cls, dialect: Dialect) -> CallIds:
        """SignalWire uses UUIDs; Twilio uses ``CA``/``MZ``/``AC`` plus 32 hex digits."""
        if dialect == "twilio":
            return cls("CA" + uuid.uuid4().hex, "MZ" + uuid.uuid4().hex, "AC" + uuid.uuid4().hex)
        return cls(str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()))


@dataclass(frozen=True, slots=True)
class WireFormat:
    """How one stream's messages are spelled; one instance per simulated call."""

    dialect: Dialect
    ids: CallIds
    tracks: tuple[Track, ...]
    codec: CodecSpec
    custom_parameters: Mapping[str, str]

    def connected(self) -> str:
        return _compact({"event": "connected", "protocol": "Call", "version": _VERSION[self.dialect]})

    def start(self) -> str:
        ids = self.ids
        body: dict[str, object]
        if self.dialect == "twilio":
            body = {
                "accountSid": ids.account_id,
                "streamSid": ids.stream_id,
                "callSid": ids.call_id,
            }
        else:
            body = {
                "streamSid": ids.stream_id,
                "accountSid": ids.account_id,
                "callSid": ids.call_id,
            }
        body["tracks"] = list(self.tracks)
        body["customParameters"] = dict(self.custom_parameters)
        body["mediaFormat"] = self.codec.media_format()
        message: dict[str, object] = {"event": "start", "sequenceNumber": "1", "start": body}
        if self.dialect == "twilio":
            message["streamSid"] = ids.stream_id
        return _compact(message)

    def media(self, frame: MediaFrame) -> str:
        message: dict[str, object] = {
            "event": "media",
            "sequenceNumber": str(frame.sequence_number),
            "media": {
                "track": frame.track,
                "chunk": str(frame.chunk),
                "timestamp": str(frame.timestamp),
                "payload": b64encode(frame.payload).decode("ascii"),
            },
        }
        if self.dialect == "twilio":
            message["streamSid"] = self.ids.stream_id
        return _compact(message)

    def stop(self, sequence_number: int) -> str:
        message: dict[str, object] = {"event": "stop", "sequenceNumber": str(sequence_number)}
        if self.dialect == "twilio":
            message["stop"] = {"accountSid": self.ids.account_id, "callSid": self.ids.call_id}
            message["streamSid"] = self.ids.stream_id
        return _compact(message)


@dataclass(frozen=True, slots=True)
class MediaFrame:
    """One media message's counters and raw (not yet base64) payload."""

    track: Track
    sequence_number: int
    chunk: int
    timestamp: int
    payload: bytes


def track_seed(seed: int, call_index: int, track: str) -> int:
    """The signal seed of one call's track: stable across runs, distinct per call and track."""
    digest = hashlib.blake2b(f"{seed}:{call_index}:{track}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def make_signal(kind: Literal["speech", "tone"], codec: CodecSpec, seed: int, track: str) -> Signal:
    """The generator a track sends: seeded speech, or a tone (440 Hz inbound, 660 Hz outbound)."""
    if kind == "tone":
        return Tone(codec.sample_rate, 660.0 if track == "outbound" else 440.0, 0.5)
    return SpeechLike(codec.sample_rate, seed)


@dataclass(frozen=True, slots=True)
class Faults:
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0


class _TrackFaults:
    """Per-track fault injection; ``feed`` returns the frames to send for this tick."""

    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self._faults = faults
        self._rng = rng
        self._held: MediaFrame | None = None
        self.dropped = 0
        self.duplicated = 0
        self.reordered = 0

    def feed(self, frame: MediaFrame, last: bool) -> list[MediaFrame]:
        if self._held is not None:
            # The held frame goes out right after its successor: one swap, not a cascade.
            held, self._held = self._held, None
            return [frame, held]
        # Always draw three numbers, so one fault's probability never shifts another's choices.
        roll_drop, roll_reorder, roll_dup = (
            self._rng.random(),
            self._rng.random(),
            self._rng.random(),
        )
        if roll_drop < self._faults.drop:
            self.dropped += 1
            return []
        if not last and roll_reorder < self._faults.reorder:
            self._held = frame
            self.reordered += 1
            return []
        if roll_dup < self._faults.duplicate:
            self.duplicated += 1
            return [frame, frame]
        return [frame]


class FramePlan:
    """A call's media, tick by tick: counters assigned before faults, so faults leave gaps."""

    def __init__(
        self,
        wire: WireFormat,
        frames: int,
        signals: Mapping[Track, Signal],
        faults: Faults,
        fault_seed: str,
    ) -> None:
        self.wire = wire
        self.frames = frames
        self._signals = signals
        self._faults = {track: _TrackFaults(faults, random.Random(f"{fault_seed}:{track}")) for track in wire.tracks}

    @property
    def stop_sequence_number(self) -> int:
        return 2 + self.frames * len(self.wire.tracks)

    def ticks(self) -> Iterator[list[MediaFrame]]:
        """One list per 20 ms tick: what to send then, tracks in ``wire.tracks`` order."""
        tracks = self.wire.tracks
        codec = self.wire.codec
        first_ts = _FIRST_TIMESTAMP[self.wire.dialect]
        for tick in range(self.frames):
            batch: list[MediaFrame] = []
            for position, track in enumerate(tracks):
                payload = codec.encode(self._signals[track].read(codec.samples_per_frame))
                frame = MediaFrame(
                    track=track,
                    sequence_number=2 + tick * len(tracks) + position,
                    chunk=tick + 1,
                    timestamp=first_ts + tick * FRAME_MS,
                    payload=payload,
                )
                batch.extend(self._faults[track].feed(frame, last=tick == self.frames - 1))
            yield batch

    def counts(self, track: Track) -> tuple[int, int, int]:
        """(dropped, duplicated, reordered) so far for ``track``."""
        faults = self._faults[track]
        return faults.dropped, faults.duplicated, faults.reordered


def tracks_for(track: Literal["inbound", "outbound", "both"]) -> tuple[Track, ...]:
    if track == "both":
        return ("inbound", "outbound")
    if track == "outbound":
        return ("outbound",)
    return ("inbound",)


def frame_count(duration: float) -> int:
    """Whole 20 ms frames in ``duration`` seconds."""
    return max(0, round(duration * 1000 / FRAME_MS))

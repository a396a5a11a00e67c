"""The provider-neutral half of the simulator's wire: media frames, their counters, signals, faults.

A call's audio is planned tick by tick (:class:`FramePlan`): every lane (a track, or both tracks of
one interleaved stereo frame) gets one frame per tick, numbered before any fault is applied, so a
dropped frame leaves a gap in its counters exactly as a provider's loss would. Faults (drop,
duplicate, reorder) are drawn per lane from a seeded RNG. How a frame is spelled on the wire is
each provider's business (:mod:`gateway.tools.providers`). Pure: no sockets, no clocks.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.audio import FRAME_MS, CodecSpec, Signal, SpeechLike, Tone

Track = Literal["inbound", "outbound"]
TrackChoice = Literal["inbound", "outbound", "both"]

Audio = tuple[tuple[Track, bytes], ...]
"""Per track, the audio one frame carries (one entry; two for an interleaved stereo frame)."""
LaneSource = Callable[[], tuple[bytes, Audio]]
"""The next frame of one lane: the bytes on the wire, and the per-track audio in them."""


@dataclass(frozen=True, slots=True)
class MediaFrame:
    """One media message's counters and raw (not yet base64) payload."""

    track: Track
    """The lane: the frame's track (``inbound`` for a stereo frame carrying both)."""
    sequence_number: int
    chunk: int
    timestamp: int
    """Milliseconds on the provider's media clock, with the provider's own first value."""
    payload: bytes
    audio: Audio = ()
    """Per track audio in ``payload``; empty means all of it is ``track``'s."""

    def tracks(self) -> Audio:
        return self.audio or ((self.track, self.payload),)


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


class _LaneFaults:
    """Per-lane fault injection; ``feed`` returns the frames to send for this tick."""

    def __init__(self, faults: Faults, rng: random.Random) -> None:
        self._faults = faults
        self._rng = rng
        self.held: MediaFrame | None = None
        self.dropped = 0
        self.duplicated = 0
        self.reordered = 0

    def feed(self, frame: MediaFrame) -> list[MediaFrame]:
        if self.held is not None:
            # The held frame goes out right after its successor: one swap, not a cascade.
            held, self.held = self.held, None
            return [frame, held]
        # Always draw three numbers, so one fault's probability never shifts another's choices.
        roll_drop, roll_reorder, roll_dup = self._rng.random(), self._rng.random(), self._rng.random()
        if roll_drop < self._faults.drop:
            self.dropped += 1
            return []
        if roll_reorder < self._faults.reorder:
            self.held = frame
            self.reordered += 1
            return []
        if roll_dup < self._faults.duplicate:
            self.duplicated += 1
            return [frame, frame]
        return [frame]

    def flush(self) -> list[MediaFrame]:
        """A frame held for a swap that never came (the call ended): sent last, in order after all."""
        if self.held is None:
            return []
        held, self.held = self.held, None
        self.reordered -= 1
        return [held]


class FramePlan:
    """A call's media, tick by tick: counters assigned before faults, so faults leave gaps.

    ``lanes`` maps each lane to its source; ``sequence`` hands out the provider's per-socket
    message counter (shared with every other message the call sends), called once per frame as
    the frame is made. The plan has no end of its own: the sender asks for ticks for as long as
    the call lasts, then :meth:`flush` returns a frame still held back for reordering.
    """

    def __init__(
        self,
        lanes: Mapping[Track, LaneSource],
        faults: Faults,
        fault_seed: str,
        *,
        sequence: Callable[[], int],
        frame_ms: int = FRAME_MS,
        first_timestamp: int = 0,
    ) -> None:
        self._lanes = dict(lanes)
        self._sequence = sequence
        self.frame_ms = frame_ms
        self._first = first_timestamp
        self._faults = {lane: _LaneFaults(faults, random.Random(f"{fault_seed}:{lane}")) for lane in self._lanes}
        self.ticks = 0

    @property
    def lanes(self) -> tuple[Track, ...]:
        return tuple(self._lanes)

    def tick(self) -> list[MediaFrame]:
        """The next tick: what to send now, lanes in order."""
        n = self.ticks
        self.ticks += 1
        batch: list[MediaFrame] = []
        for lane, source in self._lanes.items():
            payload, audio = source()
            frame = MediaFrame(
                track=lane,
                sequence_number=self._sequence(),
                chunk=n + 1,
                timestamp=self._first + n * self.frame_ms,
                payload=payload,
                audio=audio,
            )
            batch.extend(self._faults[lane].feed(frame))
        return batch

    def flush(self) -> list[MediaFrame]:
        return [frame for faults in self._faults.values() for frame in faults.flush()]

    def counts(self, lane: Track) -> tuple[int, int, int]:
        """(dropped, duplicated, reordered) so far for ``lane``."""
        faults = self._faults[lane]
        return faults.dropped, faults.duplicated, faults.reordered


def tracks_for(track: TrackChoice) -> tuple[Track, ...]:
    if track == "both":
        return ("inbound", "outbound")
    if track == "outbound":
        return ("outbound",)
    return ("inbound",)


def frame_count(duration: float, frame_ms: int = FRAME_MS) -> int:
    """Whole frames of ``frame_ms`` in ``duration`` seconds."""
    return max(0, round(duration * 1000 / frame_ms))

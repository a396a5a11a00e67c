"""One stream's way to NATS: straight through while the link is ready, a bounded backlog otherwise.

The backlog exists for outages and slow brokers, not for every frame: while the link is ready and
nothing is held, :meth:`Outbox.frame` formats the message from the track's template and hands it
over synchronously. Once anything is held, everything newer is held behind it, so a stream's
messages reach the bus in the order they were read (``started`` first, ``stopped`` last). When the
link gives back messages it never got confirmed, they go to the front.

Bounds (``buffer.*``): at most ``capacity`` audio frames are held; past it the oldest audio frame
is dropped and counted (``drop_oldest``) or the stream is closed with 1013 (``close``). At most
``max_events`` lifecycle events are held; past it the provider is flooding us and the stream is
closed (1008); ``error`` and ``stopped`` are always taken. Counters are plain integers, read at
scrape time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Final

from gateway.errors import CloseCode, GatewayError, RemoteProtocolError
from gateway.publish.base import EVENT, Publisher
from gateway.publish.wire import FrameTemplate, encode

TRACKS: Final = ("inbound", "outbound")
_RESENT_EVENT: Final = EVENT - 1
"""The ``track`` of an event given back by the link (held, but not counted in ``events_held``)."""
_NO_TRACKS: Final[deque[int]] = deque(maxlen=0)
"""Stands in for the track deque until the backlog is created (never appended to)."""


class BufferOverflow(GatewayError):
    """``buffer.overflow=close``: the stream could not keep up with NATS and is closed (1013)."""

    close_code = CloseCode.TRY_AGAIN_LATER
    reason = "backpressure"


class EventFlood(RemoteProtocolError):
    """More events held than ``buffer.max_events``: the provider floods marks or DTMF (1008)."""

    reason = "event_flood"


class Outbox:
    __slots__ = (
        "_backlog",
        "_backlog_tracks",
        "_drop_oldest",
        "_heads",
        "_link",
        "_prefix_lens",
        "_prefixes",
        "audio_held",
        "capacity",
        "dropped",
        "events_held",
        "max_events",
        "held_per_track",
    )

    def __init__(
        self,
        link: Publisher,
        templates: Sequence[FrameTemplate],
        *,
        capacity: int,
        max_events: int,
        drop_oldest: bool = True,
    ) -> None:
        self._link = link
        # The templates' parts, taken apart so that a frame costs no call into them.
        self._heads = tuple(t.head for t in templates)
        self._prefixes = tuple(t.prefix for t in templates)
        self._prefix_lens = tuple(len(t.prefix) for t in templates)
        # Two parallel deques rather than one of tuples: while NATS is slow the backlog fills at
        # the full frame rate, and a tuple per frame kept the cyclic GC busy (a perf profile at
        # maximum rate showed 15 % of the CPU in collections); bytes and small ints are untracked.
        # Created on first use: most streams never hold anything (memory per idle stream).
        self._backlog: deque[bytes] | None = None
        self._backlog_tracks: deque[int] = _NO_TRACKS
        self._drop_oldest = drop_oldest
        self.capacity = capacity
        self.max_events = max_events
        self.audio_held = 0
        self.events_held = 0
        self.held_per_track = [0, 0]
        """Audio frames held (not yet handed to NATS), per track index."""
        self.dropped: dict[str, list[int]] = {}
        """Audio frames not delivered: reason -> per track index."""

    # -- the per-frame path ------------------------------------------------------------------------

    def frame(self, track: int, seq: int, ts: int, payload: bytes) -> None:
        # FrameTemplate.frame and Publisher.write, inlined: about 0.25 us less per frame (timeit).
        tail = b"%d\r\nSgw-Ts: %d\r\n\r\n" % (seq, ts)
        size = self._prefix_lens[track] + len(tail)
        msg = b"%b%d %d\r\n%b%b%b\r\n" % (
            self._heads[track],
            size,
            size + len(payload),
            self._prefixes[track],
            tail,
            payload,
        )
        link = self._link
        if link.ready and not self._backlog:
            batch = link.batch
            batch.append(msg)
            link.owners.append(self)
            if len(batch) == 1:
                link.schedule()
        else:
            self._hold_audio(msg, track)

    def event(self, subject: str, body: bytes, headers: Mapping[str, str], *, final: bool = False) -> None:
        msg = encode(subject, body, headers)
        link = self._link
        if link.ready and not self._backlog:
            link.write(self, msg)
            return
        if not final and self.events_held >= self.max_events:
            raise EventFlood(f"more than {self.max_events} events held: the provider floods events")
        self._hold(msg, EVENT)
        self.events_held += 1

    # -- the backlog -------------------------------------------------------------------------------

    @property
    def holding(self) -> bool:
        return bool(self._backlog)

    def _hold_audio(self, msg: bytes, track: int) -> None:
        if self.audio_held >= self.capacity:
            if not self._drop_oldest:
                raise BufferOverflow(f"buffer full ({self.capacity} frames): NATS is not keeping up")
            self._evict_oldest_audio("backpressure")
        self._hold(msg, track)
        self.audio_held += 1
        self.held_per_track[track] += 1

    def _backlog_for_use(self) -> deque[bytes]:
        if self._backlog is None:
            self._backlog, self._backlog_tracks = deque(), deque()
        return self._backlog

    def _hold(self, msg: bytes, track: int) -> None:
        backlog = self._backlog_for_use()
        if not backlog:
            self._link.hold(self)
        backlog.append(msg)
        self._backlog_tracks.append(track)

    def _evict_oldest_audio(self, reason: str) -> None:
        backlog, tracks = self._backlog_for_use(), self._backlog_tracks
        if tracks[0] >= 0:
            backlog.popleft()
            track = tracks.popleft()
        else:  # rare: events at the head; drop the oldest audio behind them
            index = next(i for i, t in enumerate(tracks) if t >= 0)
            track = tracks[index]
            del backlog[index]
            del tracks[index]
        self.audio_held -= 1
        self.held_per_track[track] -= 1
        self.count_drop(track, reason)

    def count_drop(self, track: int, reason: str, n: int = 1) -> None:
        per_track = self.dropped.get(reason)
        if per_track is None:
            per_track = self.dropped[reason] = [0, 0]
        per_track[track] += n

    def drain(self, budget: int) -> bool:
        """Called by the link once it is ready: write held messages, oldest first."""
        backlog, tracks, link = self._backlog_for_use(), self._backlog_tracks, self._link
        while backlog and budget > 0 and link.ready:
            msg = backlog.popleft()
            track = tracks.popleft()
            link.write(self, msg)
            budget -= 1
            if track >= 0:
                self.audio_held -= 1
                self.held_per_track[track] -= 1
            elif track == EVENT:
                self.events_held -= 1
        return not backlog

    def take_back(self, msgs: Sequence[bytes]) -> int:
        """Written but never confirmed (the connection broke first): they go first, in order.

        Which track a message belongs to is read off its subject (rare work: only after a broken
        connection), so the per-frame path records nothing but the message. Events sent again are
        the gateway's, not the provider's: they do not count against ``max_events``."""
        if not msgs:
            return 0
        was_empty = not self._backlog
        tracks = [self._track_of(msg) for msg in msgs]
        self._backlog_for_use().extendleft(reversed(msgs))
        self._backlog_tracks.extendleft(reversed(tracks))
        audio = 0
        for track in tracks:
            if track >= 0:
                audio += 1
                self.audio_held += 1
                self.held_per_track[track] += 1
        while self.audio_held > self.capacity:
            self._evict_oldest_audio("backpressure")
        if was_empty:
            self._link.hold(self)
        return audio

    def _track_of(self, msg: bytes) -> int:
        for track, head in enumerate(self._heads):
            if msg.startswith(head):
                return track
        return _RESENT_EVENT

    def abandon(self, reason: str) -> int:
        """Give up what is held (shutdown deadline): every audio frame is counted as dropped."""
        abandoned = 0
        for track in self._backlog_tracks:
            if track >= 0:
                self.count_drop(track, reason)
                abandoned += 1
        if self._backlog is not None:
            self._backlog.clear()
            self._backlog_tracks.clear()
        self.audio_held = self.events_held = 0
        self.held_per_track = [0, 0]
        self._link.forget(self)
        return abandoned

    def seal(self) -> None:
        """The stream has ended; nothing to stop here (the link drains what is held)."""

    def dropped_per_track(self) -> list[int]:
        totals = [0, 0]
        for per_track in self.dropped.values():
            totals[0] += per_track[0]
            totals[1] += per_track[1]
        return totals

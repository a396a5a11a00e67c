"""One stream's outbox when its route publishes every frame on several subject sets (copies).

A frame goes out as one message per subject set (the route's subject, then each copy's), each
from its own template, with the same ``Sgw-Seq`` and ``Sgw-Ts``. The messages of one frame are
joined into one entry of the outbox, so everything :class:`~gateway.publish.outbox.Outbox`
promises holds per frame, whatever the number of copies: one bounded backlog (``capacity`` frames,
each with all its messages), events in order with the audio, a frame held, dropped (and counted
in ``dropped`` and ``stopped``) or handed over as a whole, and a connection that breaks gives
whole frames back. Separate outboxes per subject set would each have their own backlog and
counters, and a copy could arrive after ``stopped``.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.publish.base import Publisher
from gateway.publish.outbox import Outbox
from gateway.publish.wire import FrameTemplate


class FanoutOutbox(Outbox):
    __slots__ = ("_sets",)

    def __init__(
        self,
        link: Publisher,
        subject_sets: Sequence[Sequence[FrameTemplate]],
        *,
        capacity: int,
        max_events: int,
        drop_oldest: bool = True,
    ) -> None:
        """``subject_sets``: per subject set (the route's own first), its template per track."""
        # The first set's templates tell a frame's track when messages come back (take_back).
        super().__init__(link, subject_sets[0], capacity=capacity, max_events=max_events, drop_oldest=drop_oldest)
        self._sets = tuple(
            (tuple(t.head for t in templates), tuple(t.prefix for t in templates)) for templates in subject_sets
        )

    def frame(self, track: int, seq: int, ts: int, payload: bytes) -> None:
        """The same payload on every subject set (copies without a transform)."""
        self.frames(track, seq, ts, (payload,) * len(self._sets))

    def frames(self, track: int, seq: int, ts: int, payloads: Sequence[bytes]) -> None:
        """One frame: ``payloads[i]`` on subject set ``i``."""
        tail = b"%d\r\nSgw-Ts: %d\r\n\r\n" % (seq, ts)
        parts = []
        for (heads, prefixes), payload in zip(self._sets, payloads, strict=True):
            prefix = prefixes[track]
            size = len(prefix) + len(tail)
            parts.append(b"%b%d %d\r\n%b%b%b\r\n" % (heads[track], size, size + len(payload), prefix, tail, payload))
        msg = b"".join(parts)
        link = self._link
        if link.ready and not self._backlog:
            batch = link.batch
            batch.append(msg)
            link.owners.append(self)
            if len(batch) == 1:
                link.schedule()
        else:
            self._hold_audio(msg, track)

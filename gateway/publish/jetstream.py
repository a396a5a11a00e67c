"""The outbox of a stream whose route publishes into a JetStream stream (``target.jetstream``).

Same contract as :class:`~gateway.publish.outbox.Outbox` (the shell cannot tell them apart), but
every message is acknowledged by the stream, so it is a queue emptied by a task that publishes
one message at a time through the link's :meth:`~gateway.publish.base.Publisher.jetstream` and
waits for its acknowledgement. Every message carries ``Nats-Msg-Id`` (``{stream_id}:{track}:{seq}``
for audio, ``{stream_id}:{kind}:{n}`` for events), so a message sent again after an unanswered
publish is stored once. A message the stream refuses for good is counted as dropped (``rejected``).
The queue has the same bounds and overflow policy as the core outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Mapping
from typing import Final

from gateway.errors import PublishRejected, PublishUnavailable
from gateway.publish.base import Publisher
from gateway.publish.outbox import BufferOverflow, EventFlood

logger = logging.getLogger(__name__)

_TRACKS: Final = ("inbound", "outbound")
_RETRY_BACKOFF: Final = 0.05
_Item = tuple[str, bytes, dict[str, str], int]
"""subject, payload, headers, track index (-1 event, -2 final event)."""


class JetStreamOutbox:
    def __init__(
        self,
        link: Publisher,
        subjects: tuple[str, str],
        headers: Mapping[str, str],
        *,
        stream: str,
        stream_id: str,
        capacity: int,
        max_events: int,
        drop_oldest: bool = True,
    ) -> None:
        self._link = link
        self._subjects = subjects
        self._headers = dict(headers)
        self._stream = stream
        self._stream_id = stream_id
        self._queue: deque[_Item] = deque()
        self._drop_oldest = drop_oldest
        self.capacity = capacity
        self.max_events = max_events
        self.audio_held = 0
        self.events_held = 0
        self._events = 0
        self.held_per_track = [0, 0]
        self.dropped: dict[str, list[int]] = {}
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="jetstream-outbox")

    @property
    def holding(self) -> bool:
        return bool(self._queue) or self._busy

    _busy = False

    def frame(self, track: int, seq: int, ts: int, payload: bytes) -> None:
        if self.audio_held >= self.capacity:
            if not self._drop_oldest:
                raise BufferOverflow(f"buffer full ({self.capacity} frames): JetStream is not keeping up")
            self._evict_oldest_audio()
        headers = {
            **self._headers,
            "Sgw-Seq": str(seq),
            "Sgw-Ts": str(ts),
            "Nats-Msg-Id": f"{self._stream_id}:{_TRACKS[track]}:{seq}",
        }
        self._queue.append((self._subjects[track], payload, headers, track))
        self.audio_held += 1
        self.held_per_track[track] += 1
        self._wake.set()

    def event(self, subject: str, body: bytes, headers: Mapping[str, str], *, final: bool = False) -> None:
        if not final and self.events_held >= self.max_events:
            raise EventFlood(f"more than {self.max_events} events held: the provider floods events")
        self._events += 1
        msg_id = f"{self._stream_id}:{headers.get('Sgw-Event', 'event')}:{self._events}"
        self._queue.append((subject, body, {**headers, "Nats-Msg-Id": msg_id}, -2 if final else -1))
        self.events_held += 1
        self._wake.set()

    def _evict_oldest_audio(self) -> None:
        index = next(i for i, item in enumerate(self._queue) if item[3] >= 0)
        track = self._queue[index][3]
        del self._queue[index]
        self.audio_held -= 1
        self.held_per_track[track] -= 1
        self.count_drop(track, "backpressure")

    def count_drop(self, track: int, reason: str, n: int = 1) -> None:
        self.dropped.setdefault(reason, [0, 0])[track] += n

    def dropped_per_track(self) -> list[int]:
        return [sum(v[0] for v in self.dropped.values()), sum(v[1] for v in self.dropped.values())]

    def seal(self) -> None:
        """The stream has ended: the task stops once the queue is empty."""
        self._sealed = True
        self._wake.set()

    _sealed = False

    async def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                if self._sealed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            subject, payload, headers, track = queue[0]
            self._busy = True
            try:
                await self._link.jetstream(subject, payload, headers, self._stream)
            except PublishUnavailable:
                # Unknown outcome: send the same message again (its Nats-Msg-Id de-duplicates).
                if self._link.ready:
                    await asyncio.sleep(_RETRY_BACKOFF)
                else:
                    await self._link.wait_ready()
                continue
            except PublishRejected as exc:
                if track >= 0:
                    self.count_drop(track, "rejected")
                else:
                    logger.error("event could not be stored in %s: %s", self._stream, exc.message)
            finally:
                self._busy = False
            if queue and queue[0][2] is headers:
                queue.popleft()
                if track >= 0:
                    self.audio_held -= 1
                    self.held_per_track[track] -= 1
                else:
                    self.events_held -= 1

    def abandon(self, reason: str) -> int:
        self._task.cancel()
        abandoned = 0
        for _, _, _, track in self._queue:
            if track >= 0:
                self.count_drop(track, reason)
                abandoned += 1
        self._queue.clear()
        self.audio_held = self.events_held = 0
        self.held_per_track = [0, 0]
        return abandoned

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

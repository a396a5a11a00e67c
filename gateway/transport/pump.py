"""The bounded buffer between one stream's socket reader and NATS, and the task that empties it.

The reader only ever calls the synchronous ``put_*`` methods, so it never waits for NATS (a slow
reader makes the provider drop audio: Twilio 31930). The pump task publishes in FIFO order, so
``started`` is first and ``stopped`` last on the bus. Overflow policy (``buffer.overflow``):
``drop_oldest`` evicts the oldest *audio* frame and counts it by reason. Events are bounded apart
(``buffer.max_events``): past the bound the stream is flooding, so the event is refused, counted,
and the stream closed; its final ``error`` and ``stopped`` are always taken.
The item being published is taken out of the queue first, so eviction can never remove it. While
NATS is down the pump waits for the reconnect; messages the broker never confirmed come back via
``on_lost`` and are sent again, in order, ahead of newer ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import msgspec
from prometheus_client import Counter, Histogram

from gateway.errors import CloseCode, GatewayError, PublishRejected, PublishUnavailable, RemoteProtocolError
from gateway.observability.metrics import GatewayMetrics
from gateway.protocol.actions import AudioOut, EventOut
from gateway.publish.base import Publisher

logger = logging.getLogger(__name__)

Item = AudioOut | EventOut
_ENCODER = msgspec.json.Encoder()
_RETRY_BACKOFF = 0.05
_FINAL_EVENTS = frozenset(("error", "stopped"))


class EventFlood(RemoteProtocolError):
    """More events queued than ``buffer.max_events``: the provider floods marks or DTMF (1008)."""

    reason = "event_flood"


class BufferOverflow(GatewayError):
    """``buffer.overflow=close``: the stream could not keep up with NATS and is closed (1013)."""

    close_code = CloseCode.TRY_AGAIN_LATER
    reason = "backpressure"


@dataclass(slots=True)
class _Bound:
    """Metric children resolved once per stream (no label lookups per frame)."""

    published: dict[str, Counter]
    latency: Histogram
    dropped: dict[str, Counter] = field(default_factory=dict)


class StreamPump:
    def __init__(
        self,
        publisher: Publisher,
        metrics: GatewayMetrics,
        *,
        capacity: int,
        overflow: str,
        max_events: int = 200,
        jetstream: str | None = None,
    ) -> None:
        self.capacity = capacity
        self.max_events = max_events
        self.events_queued = 0
        self._publisher = publisher
        self._metrics = metrics
        self._drop_oldest = overflow == "drop_oldest"
        self._jetstream = jetstream
        self._queue: deque[Item] = deque()
        self._lost: list[Item] = []
        self.audio_queued = 0
        self.dropped: dict[str, dict[str, int]] = {}
        self._wake = asyncio.Event()
        self._closing = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._bound: _Bound | None = None
        self._route = "unrouted"
        self._task: asyncio.Task[None] | None = None

    def bind(self, route: str, jetstream: str | None) -> None:
        """Called once the route is known (before the first frame)."""
        self._route = route
        self._jetstream = jetstream
        m = self._metrics
        self._bound = _Bound(
            published={t: m.frames_published.labels(route, t) for t in ("inbound", "outbound")},
            latency=m.publish_latency.labels(route),
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="stream-pump")

    @property
    def fill_ratio(self) -> float:
        return self.audio_queued / self.capacity

    def put_audio(self, item: AudioOut) -> None:
        if self.audio_queued >= self.capacity:
            if not self._drop_oldest:
                raise BufferOverflow(f"buffer full ({self.capacity} frames): NATS is not keeping up")
            self._evict_oldest_audio("backpressure")
        self._queue.append(item)
        self.audio_queued += 1
        self._idle.clear()
        self._wake.set()

    def put_event(self, item: EventOut) -> None:
        if self.events_queued >= self.max_events and item.kind not in _FINAL_EVENTS:
            self._metrics.events_dropped.labels("flood").inc()
            raise EventFlood(f"more than {self.max_events} events queued: the provider floods {item.kind} events")
        self.events_queued += 1
        self._queue.append(item)
        self._idle.clear()
        self._wake.set()

    def _evict_oldest_audio(self, reason: str) -> None:
        queue = self._queue
        if type(queue[0]) is AudioOut:
            victim = queue.popleft()
        else:  # rare: an event sits at the head; find the oldest audio frame behind it
            index = next(i for i, it in enumerate(queue) if type(it) is AudioOut)
            victim = queue[index]
            del queue[index]
        self.audio_queued -= 1
        assert isinstance(victim, AudioOut)
        self._count_drop(victim.track, reason)

    def _count_drop(self, track: str, reason: str) -> None:
        per_track = self.dropped.setdefault(track, {})
        per_track[reason] = per_track.get(reason, 0) + 1
        counter = self._bound.dropped.get(reason) if self._bound else None
        if counter is None:
            counter = self._metrics.frames_dropped.labels(self._route, reason)
            if self._bound is not None:
                self._bound.dropped[reason] = counter
        counter.inc()

    def _on_lost(self, item: object) -> None:
        assert isinstance(item, AudioOut | EventOut)
        self._lost.append(item)
        self._idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        queue = self._queue
        publisher = self._publisher
        while True:
            if self._lost:
                # Given back by the publisher (connection lost before confirmation): they are older
                # than anything queued, so they go first, in their original order.
                lost, self._lost = self._lost, []
                self._metrics.frames_resent.inc(len(lost))
                queue.extendleft(reversed(lost))
                audio = sum(1 for it in lost if type(it) is AudioOut)
                self.audio_queued += audio
                self.events_queued += len(lost) - audio
            if not queue:
                self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            item = queue.popleft()
            is_audio = type(item) is AudioOut
            if is_audio:
                self.audio_queued -= 1
            else:
                self.events_queued -= 1
            try:
                await self._send(item)
            except PublishUnavailable:
                queue.appendleft(item)
                if is_audio:
                    self.audio_queued += 1
                else:
                    self.events_queued += 1
                if publisher.is_ready():
                    await asyncio.sleep(_RETRY_BACKOFF)  # ready but refusing (e.g. slow ack): back off
                else:
                    await publisher.wait_ready()
                continue
            except PublishRejected as exc:
                if isinstance(item, AudioOut):
                    self._count_drop(item.track, "rejected")
                else:
                    logger.error("event %s could not be published: %s", item.kind, exc.message)
                continue

    async def _send(self, item: Item) -> None:
        if type(item) is AudioOut:
            await self._publisher.publish(
                item.subject,
                item.payload,
                item.headers,
                jetstream=self._jetstream,
                on_lost=self._on_lost,
                token=item,
            )
            bound = self._bound
            if bound is not None:
                bound.published[item.track].inc()
                bound.latency.observe(max(0.0, time.time() - item.received))
            return
        assert isinstance(item, EventOut)
        if item.kind == "stopped":
            self._fill_dropped(item)
        payload = _ENCODER.encode(item.body)
        await self._publisher.publish(
            item.subject,
            payload,
            item.headers,
            jetstream=self._jetstream,
            on_lost=self._on_lost,
            token=item,
        )
        self._metrics.events_published.labels(item.kind).inc()

    def _fill_dropped(self, item: EventOut) -> None:
        tracks = item.body.get("tracks", {})
        for track, reasons in self.dropped.items():
            entry = tracks.setdefault(track, {"frames": 0, "gaps": 0, "duplicates": 0, "reordered": 0})
            entry["dropped"] = sum(reasons.values())

    async def close(self, timeout: float | None) -> int:
        """Publish what is queued (bounded by ``timeout``), then stop. Returns frames abandoned."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            return 0
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            abandoned = 0
            for item in list(self._queue) + self._lost:
                if isinstance(item, AudioOut):
                    self._count_drop(item.track, "shutdown")
                    abandoned += 1
            self._queue.clear()
            self._lost.clear()
            self.audio_queued = 0
            return abandoned
        return 0

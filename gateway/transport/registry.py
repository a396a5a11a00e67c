"""Live streams of this process: the stream limit, back-pressure, metrics, and the drain on SIGTERM.

A stream is *open* while its socket is; after that it may still be *pending*: its outbox holds
messages that NATS could not take yet (an outage), and it stays here, counted in the metrics,
until they are out or abandoned. Back-pressure from the link pauses reading on every open socket
(and on any opened meanwhile); ``buffer.max_pause`` bounds the pause, after which the sockets are
read again and the outboxes take the audio within their own bounds.

Shutdown (docs/conventions.md section 8): wait until streams end or the drain deadline passes,
then close the rest with 1001 with bounded concurrency, then give every outbox a bounded time to
empty; what it still holds is counted as dropped (``shutdown``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any

from gateway.observability.metrics import GatewayMetrics

if TYPE_CHECKING:
    from gateway.transport.stream import ProviderStream

logger = logging.getLogger(__name__)

_CLOSE_BATCH_PAUSE = 0.0


class StreamRegistry:
    def __init__(self) -> None:
        self._open: set[ProviderStream] = set()
        self._pending: set[ProviderStream] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.paused = False
        self._pause_timer: asyncio.TimerHandle | None = None
        self._metrics: GatewayMetrics | None = None
        self._max_pause = 0.0
        self._sweep_every = 1.0
        self._sweep_handle: asyncio.TimerHandle | None = None

    def configure(self, metrics: GatewayMetrics, max_pause: float, sweep_every: float) -> None:
        self._metrics = metrics
        self._max_pause = max_pause
        self._sweep_every = sweep_every

    def start(self) -> None:
        """The one timer of all streams: their timeouts and heartbeats (:meth:`ProviderStream.check`)."""
        loop = asyncio.get_running_loop()
        self._sweep_handle = loop.call_later(self._sweep_every, self._sweep_streams)

    def _sweep_streams(self) -> None:
        now = time.monotonic()
        for stream in list(self._open):
            stream.check(now)
        self._sweep_handle = asyncio.get_running_loop().call_later(self._sweep_every, self._sweep_streams)

    def stop(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None

    def __len__(self) -> int:
        return len(self._open)

    def add(self, stream: ProviderStream) -> None:
        self._open.add(stream)
        self._empty.clear()
        if self.paused:
            stream.pause_reading(True)

    def socket_closed(self, stream: ProviderStream) -> None:
        self._open.discard(stream)
        outbox = stream.outbox
        if outbox is not None and outbox.holding:
            self._pending.add(stream)
        else:
            self._retire(stream)
        if not self._open:
            self._empty.set()

    def _retire(self, stream: ProviderStream) -> None:
        if self._metrics is not None and stream.outbox is not None:
            self._metrics.stream_totals.retire(stream)

    def sweep(self) -> None:
        """Retire the closed streams whose outbox has emptied."""
        for stream in [s for s in self._pending if s.outbox is None or not s.outbox.holding]:
            self._pending.discard(stream)
            self._retire(stream)

    def counted(self) -> Iterator[ProviderStream]:
        """Every stream whose counts are not yet in the retired totals (the metrics collector)."""
        self.sweep()
        yield from (s for s in self._open if s.outbox is not None)
        yield from self._pending

    def track_task(self, coro: Coroutine[Any, Any, None]) -> None:
        """Keep a reference to a background task (playback subscriptions)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- back-pressure ------------------------------------------------------------------------------

    def on_flow(self, blocked: bool) -> None:
        """The link stopped (or resumed) taking writes: pause (or resume) every provider socket."""
        if blocked == self.paused:
            return
        if blocked:
            if self._metrics is not None:
                self._metrics.backpressure_pauses.inc()
            if self._max_pause > 0:
                self._pause_timer = asyncio.get_running_loop().call_later(self._max_pause, self._pause_expired)
        elif self._pause_timer is not None:
            self._pause_timer.cancel()
            self._pause_timer = None
        self._set_paused(blocked)

    def _pause_expired(self) -> None:
        # Past the bound, read again: the outboxes hold (and count what they must drop) rather
        # than the provider dropping audio we would never know about.
        self._pause_timer = None
        logger.warning("NATS still not keeping up after %gs: reading the provider sockets again", self._max_pause)
        self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        self.paused = paused
        if self._metrics is not None:
            self._metrics.backpressure.set(1 if paused else 0)
        for stream in self._open:
            stream.pause_reading(paused)

    # -- figures ------------------------------------------------------------------------------------

    @property
    def pumps_pending(self) -> int:
        """Closed streams whose outbox still holds messages."""
        self.sweep()
        return len(self._pending)

    def buffered_frames(self) -> int:
        return sum(s.outbox.audio_held for s in self._all() if s.outbox is not None)

    def max_fill(self) -> float:
        return max((s.outbox.audio_held / s.outbox.capacity for s in self._all() if s.outbox is not None), default=0.0)

    def _all(self) -> Iterator[ProviderStream]:
        yield from self._open
        yield from self._pending

    # -- shutdown -----------------------------------------------------------------------------------

    async def wait_empty(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close_all(self, concurrency: int) -> int:
        """Close every open stream with 1001, ``concurrency`` at a time (a burst helps nobody)."""
        streams = list(self._open)
        for start in range(0, len(streams), max(1, concurrency)):
            for stream in streams[start : start + concurrency]:
                stream.shutdown()
            await asyncio.sleep(_CLOSE_BATCH_PAUSE)  # let the loop write those close frames
        return len(streams)

    def abandon_held(self) -> int:
        """The flush deadline passed: what outboxes still hold is dropped, and counted."""
        abandoned = 0
        for stream in list(self._pending) + list(self._open):
            if stream.outbox is not None and stream.outbox.holding:
                abandoned += stream.outbox.abandon("shutdown")
        self.sweep()
        return abandoned

"""Live streams of this process: counting for the limit, buffer gauges, and the drain on SIGTERM.

Shutdown (docs/conventions.md section 8): wait until streams end or the drain deadline passes, then close the rest with
1001 with bounded concurrency (a burst of thousands of closes at once helps nobody), then give
every buffer a bounded time to publish what it holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gateway.transport.pump import StreamPump

logger = logging.getLogger(__name__)


class LiveStream(Protocol):
    pump: StreamPump

    async def shutdown(self) -> None:
        """Close the socket with 1001 (the drain deadline passed)."""
        ...


class StreamRegistry:
    def __init__(self) -> None:
        self._streams: set[LiveStream] = set()
        self._pumps: set[StreamPump] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: LiveStream) -> None:
        self._streams.add(stream)
        self._pumps.add(stream.pump)
        self._empty.clear()

    def remove(self, stream: LiveStream) -> None:
        self._streams.discard(stream)
        if not self._streams:
            self._empty.set()

    def pump_done(self, pump: StreamPump) -> None:
        self._pumps.discard(pump)

    def track_task(self, coro: Coroutine[Any, Any, None]) -> None:
        """Keep a reference to a background task (buffers finishing after their socket closed)."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pumps_pending(self) -> int:
        return len(self._pumps)

    def buffered_frames(self) -> int:
        return sum(p.audio_queued for p in self._pumps)

    def max_fill(self) -> float:
        return max((p.fill_ratio for p in self._pumps), default=0.0)

    async def wait_empty(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close_all(self, concurrency: int) -> int:
        streams = list(self._streams)
        if not streams:
            return 0
        gate = asyncio.Semaphore(max(1, concurrency))

        async def close_one(stream: LiveStream) -> None:
            async with gate:
                await stream.shutdown()

        await asyncio.gather(*(close_one(s) for s in streams), return_exceptions=True)
        return len(streams)

    async def flush_pumps(self, timeout: float) -> int:
        """Let every buffer publish what it holds; returns frames abandoned at the deadline."""
        pumps = list(self._pumps)
        results = await asyncio.gather(*(p.close(timeout) for p in pumps), return_exceptions=True)
        return sum(r for r in results if isinstance(r, int))

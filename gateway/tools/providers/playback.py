"""A provider's playback buffer, for bidirectional simulation: audio played in real time, marks echoed.

What the server sends back is queued in arrival order: audio (with the rate it plays at) and marks.
:meth:`Playback.run` plays the head of the queue at real-time speed, one tick (20 ms) at a time
against absolute deadlines, and hands each mark to ``echo`` once all the audio queued before it
has played; a mark with no audio ahead of it is echoed at once. :meth:`Playback.clear` drops the
queued audio and returns the marks that were waiting, for the providers that send those back on a
clear. The counters (received, played, cleared bytes; marks echoed) are what a test compares.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

TICK_MS: Final = 20


@dataclass(slots=True)
class _Audio:
    remaining: int
    bytes_per_ms: float


class Playback:
    """One stream's playback queue (see the module docstring)."""

    def __init__(self, echo: Callable[[str], Awaitable[None]], *, tick_ms: int = TICK_MS) -> None:
        self._echo = echo
        self._tick = tick_ms / 1000
        self._queue: deque[_Audio | str] = deque()
        self._audio_entries = 0
        self._wake = asyncio.Event()
        self.received_bytes = 0
        self.played_bytes = 0
        self.cleared_bytes = 0
        self.clears = 0

    @property
    def idle(self) -> bool:
        """Nothing queued (everything received has played, or was cleared)."""
        return not self._queue

    def audio(self, size: int, bytes_per_ms: float) -> None:
        if size <= 0 or bytes_per_ms <= 0:
            return
        self.received_bytes += size
        self._queue.append(_Audio(size, bytes_per_ms))
        self._audio_entries += 1
        self._wake.set()

    def mark(self, name: str) -> bool:
        """Queue a mark; True when it is to be echoed now (nothing queued ahead of it)."""
        if not self._queue:
            return True
        self._queue.append(name)
        self._wake.set()
        return False

    def clear(self) -> list[str]:
        """Drop the queued audio; the marks that were waiting, in order."""
        self.clears += 1
        marks = [item for item in self._queue if isinstance(item, str)]
        self.cleared_bytes += sum(item.remaining for item in self._queue if isinstance(item, _Audio))
        self._queue.clear()
        self._audio_entries = 0
        return marks

    async def run(self) -> None:
        """Play until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            origin, ticks = loop.time(), 0
            await self._release()
            while self._queue:
                ticks += 1
                delay = origin + ticks * self._tick - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)  # the audio's own duration: this is the playing
                self._play(self._tick * 1000)
                await self._release()

    def _play(self, budget_ms: float) -> None:
        queue = self._queue
        while budget_ms > 0 and queue and isinstance(queue[0], _Audio):
            head = queue[0]
            take = min(head.remaining, max(1, round(budget_ms * head.bytes_per_ms)))
            head.remaining -= take
            self.played_bytes += take
            budget_ms -= take / head.bytes_per_ms
            if head.remaining <= 0:
                queue.popleft()
                self._audio_entries -= 1

    async def _release(self) -> None:
        queue = self._queue
        while queue and isinstance(queue[0], str):
            await self._echo(str(queue.popleft()))

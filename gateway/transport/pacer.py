"""Real-time pacing of back-channel frames, for providers that need it (Vonage: exactly-20 ms binary
frames, no faster than real time; its own buffer holds about 20 to 60 s and drops the rest).

A stream gets a pacer only when its dialect first asks for one, so other streams pay nothing.
Frames keep their order: a frame that needs no pacing (a ``notify`` after some audio) waits behind
the paced ones before it, so the provider sees it when the audio before it has been sent. Paced
frames go one per ``paced_ms`` against absolute deadlines (a late tick catches up by one frame,
never by a burst). A ``clears`` frame empties the queue and goes at once. At most ``max_frames``
wait; past that the oldest are dropped and counted.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Final

from gateway.protocol.dialects.base import Outgoing

MAX_FRAMES: Final = 3000
"""One minute of 20 ms frames waiting (Vonage's own buffer holds about that much)."""


class Pacer:
    __slots__ = ("_due", "_handle", "_max", "_queue", "_send", "dropped")

    def __init__(self, send: Callable[[Outgoing], bool], *, max_frames: int = MAX_FRAMES) -> None:
        self._send = send
        self._queue: deque[Outgoing] = deque()
        self._max = max_frames
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, frame: Outgoing) -> bool:
        """Queue (or send) one frame; False when the stream is gone."""
        if frame.clears:
            self._queue.clear()
            return self._send(frame)
        if not frame.paced_ms and not self._queue and self._handle is None:
            return self._send(frame)
        if len(self._queue) >= self._max:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(frame)
        if self._handle is None:
            self._due = asyncio.get_running_loop().time()
            self._tick()
        return True

    def _tick(self) -> None:
        self._handle = None
        loop = asyncio.get_running_loop()
        while self._queue:
            frame = self._queue.popleft()
            if not self._send(frame):
                self._queue.clear()  # the stream is gone: nothing more to pace
                return
            if frame.paced_ms:
                step = frame.paced_ms / 1000
                self._due = max(self._due + step, loop.time() - step)
                self._handle = loop.call_at(self._due, self._tick)
                return

    def stop(self) -> None:
        self._queue.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

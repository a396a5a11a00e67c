"""Back-pressure for one stream of a durable route: pause its socket while its acknowledgements lag.

Core NATS routes share one link, and a slow link pauses every provider socket (the registry). A
durable route has its own bottleneck: at most ``nats.jetstream_window`` messages of a stream await
the stream's acknowledgement, and a provider that sends faster than the stream stores (a burst
after a provider-side stall, a slow JetStream, a distant leader) fills the stream buffer, which
then drops its oldest frames. The benchmark's maximum-rate phase on a JetStream route delivered
16 % of the frames before this, and counted the rest as dropped.

So when more than a quarter of the buffer waits while the link is up, this stream stops reading
its socket (TCP flow control slows the provider down) until the backlog is down to an eighth,
looked at every ``_POLL`` seconds while paused: no timer exists while a stream keeps up, and a
plain route never comes here. The read that crossed the mark may hold many more frames (picows
grows its read buffer with the traffic, so one read can bring thousands); they are in memory
already, so the outbox keeps them beyond its capacity while paused (``overdraft``) instead of
dropping what it has just been handed. As for the link, the pause is bounded by
``buffer.max_pause``: past it the socket is read again, the overdraft ends, and the buffer drops
and counts the oldest frames as usual, rather than the provider dropping audio nobody would see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

from gateway.publish.jetstream import JetStreamOutbox

FrameSink = Callable[[int, int, int, bytes], None]

_POLL: Final = 0.02
"""Seconds between looks at a paused stream's backlog (one audio frame's worth)."""


class AckFlow:
    """Wraps a durable stream's frame sink; ``pause(True/False)`` pauses and resumes its socket."""

    __slots__ = (
        "_expired",
        "_high",
        "_loop",
        "_low",
        "_max_pause",
        "_on_pause",
        "_outbox",
        "_pause",
        "_since",
        "_sink",
        "_timer",
    )

    def __init__(
        self,
        sink: FrameSink,
        outbox: JetStreamOutbox,
        pause: Callable[[bool], None],
        *,
        max_pause: float,
        on_pause: Callable[[], None],
    ) -> None:
        self._sink = sink
        self._outbox = outbox
        self._pause = pause
        self._on_pause = on_pause
        self._high = max(1, outbox.capacity // 4)
        self._low = outbox.capacity // 8
        self._max_pause = max_pause
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._since = 0.0
        self._expired = False

    def __call__(self, track: int, seq: int, ts: int, payload: bytes) -> None:
        self._sink(track, seq, ts, payload)
        if self._timer is None:
            backlog = self._outbox.backlog()
            if backlog >= self._high and not self._expired:
                self._since = self._loop.time()
                self._timer = self._loop.call_later(_POLL, self._check)
                self._outbox.overdraft = True
                self._pause(True)
                self._on_pause()
            elif self._expired and backlog <= self._low:
                self._expired = False  # caught up after an expired pause: pausing may help again

    def _check(self) -> None:
        if self._outbox.backlog() <= self._low:
            self._resume()
        elif self._max_pause > 0 and self._loop.time() - self._since >= self._max_pause:
            self._expired = True
            self._resume()
        else:
            self._timer = self._loop.call_later(_POLL, self._check)

    def _resume(self) -> None:
        self._timer = None
        self._outbox.overdraft = False
        self._pause(False)

    def stop(self) -> None:
        """The socket closed: no more looks."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

"""Admission control: is this process too busy to take another stream?

A saturated event loop runs its timers late. A timer every ``_PERIOD`` measures how late
(smoothed), exports it (``sgw_event_loop_lag_seconds``), and when it passes
``server.max_loop_lag`` new streams get 503, so the load balancer sends them to another pod while
the streams already here keep every frame. The cost is one timer callback every 100 ms.
"""

from __future__ import annotations

import asyncio
from typing import Final

from prometheus_client import Gauge

_PERIOD: Final = 0.1
_SMOOTHING: Final = 0.3
"""Weight of the newest measurement: a single slow callback does not refuse calls, a busy second does."""


class Overload:
    def __init__(self, max_lag: float, gauge: Gauge | None = None) -> None:
        self.max_lag = max_lag
        self.lag = 0.0
        self._gauge = gauge
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    @property
    def saturated(self) -> bool:
        return self.max_lag > 0 and self.lag > self.max_lag

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + _PERIOD
        self._handle = loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        late = max(0.0, now - self._due)
        self.lag = _SMOOTHING * late + (1 - _SMOOTHING) * self.lag
        if self._gauge is not None:
            self._gauge.set(self.lag)
        self._due = now + _PERIOD
        self._handle = loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

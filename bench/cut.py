"""``python -m bench.cut LAYER serve ...``: this tree's gateway, cut short after one layer (``--layers``).

The per-frame path is socket -> dialect -> session -> outbox -> link. Each cut lets a started
stream's media frames through one more layer and drops them there, so the difference between two
cuts' CPU at the same load is what the layer between them costs, in place (cold caches, the real
event loop), not in a warm loop. Everything else runs unchanged: connections, ``start``,
lifecycle events, the watchdog (dropped frames still count as the peer's activity, so no stream
times out), metrics. The cut gateways deliver no audio; the verifier says so, and only their CPU
is read.

``read``     the frame handler returns at once: socket reads, picows' parsing, one Python call
``decode``   the dialect decodes the frame (msgspec, base64 to bytes), then it is dropped
``session``  the session counts it (sequence, gaps, duplicates); the outbox drops it
``outbox``   the outbox builds the NATS message and batches it; the batch is never written

Each cut adds one Python call of its own to a frame's path, about 0.1 µs (``timeit``): under a
point of one core at 300 calls.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

from gateway import cli
from gateway.protocol.dialects.base import Decoded, Dialect
from gateway.protocol.events import Media
from gateway.publish.outbox import Outbox
from gateway.settings import NatsSettings
from gateway.transport.stream import ProviderStream

_FLUSH_INTERVAL = NatsSettings().flush_interval
"""How often the ``outbox`` cut empties its batch: the link's default flush interval."""


def _cut_read() -> None:
    handle = ProviderStream.on_ws_frame

    def on_ws_frame(self: ProviderStream, transport: Any, frame: Any) -> None:
        if self.session.streaming:
            self._messages += 1
            return
        handle(self, transport, frame)

    ProviderStream.on_ws_frame = on_ws_frame  # type: ignore[method-assign]


def _cut_decode() -> None:
    use = ProviderStream._use

    def _use(self: ProviderStream, dialect: Dialect) -> None:
        use(self, dialect)
        text: Callable[[str], Decoded] = self._text

        def decode_and_drop(data: str) -> Decoded:
            event = text(data)
            if type(event) is Media and self.session.streaming:
                self._messages += 1
                return ()
            return event

        self._text = decode_and_drop

    ProviderStream._use = _use  # type: ignore[method-assign]


def _cut_session() -> None:
    def frame(self: Outbox, track: int, seq: int, ts: int, payload: bytes) -> None:
        return None

    Outbox.frame = frame  # type: ignore[method-assign]


class _Discard:
    """A link that is always ready and throws each batch away ``_FLUSH_INTERVAL`` after its first
    message: the outbox's side of the link (list appends, one timer per batch) without the write
    and its confirmation."""

    ready = True

    def __init__(self) -> None:
        self.batch: list[bytes] = []
        self.owners: list[Any] = []
        self._loop = asyncio.get_running_loop()

    def write(self, owner: Any, msg: bytes) -> None:
        self.batch.append(msg)
        self.owners.append(owner)
        if len(self.batch) == 1:
            self.schedule()

    def schedule(self) -> None:
        self._loop.call_later(_FLUSH_INTERVAL, self._discard)

    def _discard(self) -> None:
        self.batch, self.owners = [], []

    def hold(self, owner: Any) -> None:
        """Never called: the link is always ready, so nothing is held."""

    def forget(self, owner: Any) -> None:
        """Nothing is ever held."""


def _cut_outbox() -> None:
    init = Outbox.__init__
    discard: list[_Discard] = []  # one per process, as there is one real link per process

    def __init__(self: Outbox, link: Any, *args: Any, **kwargs: Any) -> None:
        init(self, link, *args, **kwargs)
        if not discard:
            discard.append(_Discard())  # made in the event loop, on the first stream's start
        self._link = discard[0]  # type: ignore[assignment]

    Outbox.__init__ = __init__  # type: ignore[method-assign]


CUTS: dict[str, Callable[[], None]] = {
    "read": _cut_read,
    "decode": _cut_decode,
    "session": _cut_session,
    "outbox": _cut_outbox,
}
"""In the order of the per-frame path."""


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in CUTS:
        print(f"usage: python -m bench.cut {{{','.join(CUTS)}}} serve [streamgw serve flags]", file=sys.stderr)
        return 2
    CUTS[argv[0]]()
    return cli.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

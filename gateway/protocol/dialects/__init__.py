"""Provider dialects: each provider's wire messages -> canonical events, and back.

One module per provider family, each owning only its differences; :data:`DIALECTS` maps the
provider names of ``?provider=NAME`` (and of ``started.provider``) to them, and
:mod:`gateway.protocol.dialects.detect` picks one from a stream's first frames. The wire formats
are described in docs/protocols.md.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Final

from gateway.protocol.dialects.base import Dialect
from gateway.protocol.dialects.twilio import TwilioDialect

DIALECTS: Final[dict[str, Callable[[], Dialect]]] = {
    "signalwire": partial(TwilioDialect, "signalwire"),
    "twilio": partial(TwilioDialect, "twilio"),
}
"""Provider name -> a new dialect for one stream."""

SUBPROTOCOLS: Final[dict[str, str]] = {}
"""WebSocket subprotocol -> the provider that offers it on the upgrade (echoed back when offered)."""


def create(name: str, *, forced: bool) -> Dialect:
    """A new dialect for one stream: ``name`` forced by ``?provider=``, or detected from the first
    frames (then the Twilio/SignalWire dialect still tells its two providers apart itself)."""
    if not forced and name in ("signalwire", "twilio"):
        return TwilioDialect()
    return DIALECTS[name]()

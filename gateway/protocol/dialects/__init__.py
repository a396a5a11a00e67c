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

from gateway.protocol.dialects import bandwidth, plivo, telnyx
from gateway.protocol.dialects.base import Dialect, StatusParser
from gateway.protocol.dialects.exotel import ExotelDialect
from gateway.protocol.dialects.jambonz import JambonzDialect
from gateway.protocol.dialects.twilio import TwilioDialect
from gateway.protocol.dialects.twilio import parse_status as twilio_status
from gateway.protocol.dialects.vonage import VonageDialect

DIALECTS: Final[dict[str, Callable[[], Dialect]]] = {
    "signalwire": partial(TwilioDialect, "signalwire"),
    "twilio": partial(TwilioDialect, "twilio"),
    "vonage": VonageDialect,
    "jambonz": JambonzDialect,
    "telnyx": telnyx.TelnyxDialect,
    "plivo": plivo.PlivoDialect,
    "exotel": ExotelDialect,
    "bandwidth": bandwidth.BandwidthDialect,
}
"""Provider name -> a new dialect for one stream."""

SUBPROTOCOLS: Final[dict[str, str]] = {"audio.jambonz.org": "jambonz", "audio.drachtio.org": "jambonz"}
"""WebSocket subprotocol -> the provider that offers it on the upgrade (echoed back when offered)."""

STATUS_PARSERS: Final[dict[str, StatusParser]] = {
    "telnyx": telnyx.parse_status,  # first: a TeXML form without Telnyx's signature header is cXML-shaped
    "plivo": plivo.parse_status,
    "bandwidth": bandwidth.parse_status,
    "signalwire": twilio_status,
    "twilio": twilio_status,
}
"""Provider name -> its status-callback parser (``/status``). Without ``?provider=`` or a provider
signature that names one, the parsers are asked in this order (each distinct parser once) and the
first to recognise the request wins; shapes that overlap (TeXML and cXML both post ``StreamEvent``)
are told apart by the provider's signature header, which a parser checks before claiming a request."""


def create(name: str, *, forced: bool) -> Dialect:
    """A new dialect for one stream: ``name`` forced by ``?provider=``, or detected from the first
    frames (then the Twilio/SignalWire dialect still tells its two providers apart itself)."""
    if not forced and name in ("signalwire", "twilio"):
        return TwilioDialect()
    return DIALECTS[name]()

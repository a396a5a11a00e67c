"""The simulator's providers: each one's wire format as the provider sends it, one module per family.

:data:`PROVIDERS` maps the names of ``streamgw simulate --provider NAME`` (the same names as the
gateway's ``started.provider``) to their writer classes. The writers share no code with the
gateway's dialects on purpose: they are an independent peer built from the providers'
documentation (docs/protocols.md), not a mirror of the parser they test.
"""

from __future__ import annotations

from typing import Final

from gateway.tools.providers.bandwidth import BandwidthWire
from gateway.tools.providers.base import (
    BackAction,
    BadBackMessage,
    CallIds,
    ClearQueue,
    HangUp,
    MixType,
    Phase,
    ProviderName,
    ProviderWire,
    QueueAudio,
    QueueMark,
    SendDigits,
    StatusCallback,
    StreamSpec,
)
from gateway.tools.providers.exotel import ExotelWire
from gateway.tools.providers.jambonz import JambonzWire
from gateway.tools.providers.plivo import PlivoWire
from gateway.tools.providers.telnyx import TelnyxWire
from gateway.tools.providers.twilio import SignalWireWire, TwilioWire
from gateway.tools.providers.vonage import VonageWire

PROVIDERS: Final[dict[str, type[ProviderWire]]] = {
    "signalwire": SignalWireWire,
    "twilio": TwilioWire,
    "telnyx": TelnyxWire,
    "vonage": VonageWire,
    "plivo": PlivoWire,
    "exotel": ExotelWire,
    "jambonz": JambonzWire,
    "bandwidth": BandwidthWire,
}


def provider(name: str) -> type[ProviderWire]:
    """The writer class of ``name``; ValueError naming the known ones otherwise."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(PROVIDERS)}") from None


__all__ = [
    "PROVIDERS",
    "BackAction",
    "BadBackMessage",
    "CallIds",
    "ClearQueue",
    "HangUp",
    "MixType",
    "Phase",
    "ProviderName",
    "ProviderWire",
    "QueueAudio",
    "QueueMark",
    "SendDigits",
    "StatusCallback",
    "StreamSpec",
    "provider",
]

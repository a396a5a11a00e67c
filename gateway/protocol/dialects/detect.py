"""Which provider is on the other end, from the first frames of a stream (``?provider=`` skips this).

Every provider's first message says who it is (docs/design.md section 7), except a bare
``connected``: Telnyx sends ``{"event":"connected","version":"1.0.0"}`` and Exotel
``{"event":"connected"}``, and only the ``start`` after it tells them apart (and from Twilio, whose
``connected`` carries ``protocol``). So :func:`detect` may answer "not yet"; the shell keeps the
frame and asks again with the next one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

DEFAULT = "signalwire"
"""Anything unrecognisable goes to the Twilio/SignalWire dialect, which reports it properly."""


def detect(first: str) -> str | None:
    """The provider name for a stream whose first text frame is ``first``; None: ask again with
    the next frame (a bare ``connected``)."""
    try:
        message = msgspec.json.decode(first)
    except (msgspec.DecodeError, RecursionError):
        return DEFAULT
    if not isinstance(message, dict):
        return DEFAULT
    if "eventType" in message:
        # SignalWire's older envelope also says eventType, around the Twilio-shaped message.
        return DEFAULT if "rawEvent" in message else "bandwidth"
    event = message.get("event")
    if event is None:
        # jambonz opens with the call's attributes and its audio format, and no "event" at all.
        return "jambonz" if {"callSid", "sampleRate", "mixType"} & message.keys() else DEFAULT
    if event == "websocket:connected":
        return "vonage"
    if event == "connected":
        return DEFAULT if "protocol" in message else None
    body = message.get(event)
    return _by_keys(message, body if isinstance(body, dict) else {})


def _by_keys(message: Mapping[str, Any], body: Mapping[str, Any]) -> str:
    keys = message.keys() | body.keys()
    if "stream_sid" in keys or "call_sid" in keys:
        return "exotel"
    if "stream_id" in keys or "call_control_id" in keys or "sequence_number" in keys:
        return "telnyx"
    if "streamId" in keys or "callId" in keys:
        return "plivo"
    return DEFAULT

"""The dialect seam: one provider's wire format, for one stream, in and out.

A dialect is a small object the shell creates once per socket: detected from the first frames
(:mod:`gateway.protocol.dialects.detect`) or forced by ``?provider=NAME``. It turns the
provider's text **and** binary frames into canonical events (:mod:`gateway.protocol.events`), and
the consumers' back-channel messages (:mod:`gateway.protocol.playback`) into the provider's own
frames. It keeps whatever per-stream state its provider needs (the audio format announced by a
first text frame, the clock base of epoch timestamps, a reorder window, the marks in flight), so
the shell and the session never look at a provider's spelling. Adding a provider is adding one
module here, registered in :data:`gateway.protocol.dialects.DIALECTS`, and its fixtures.

Rules for dialects: sans-IO (no clocks, no awaits, no logging); malformed input raises
:class:`~gateway.errors.RemoteProtocolError` with its close code; an unknown but well-formed
message kind is :class:`~gateway.protocol.events.Ignored`. The per-frame path (one media frame
in, one :class:`~gateway.protocol.events.Media` out) must not allocate more than the event itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from gateway.errors import CloseCode, RemoteProtocolError
from gateway.protocol.events import InboundEvent
from gateway.protocol.playback import PlayMessage

Decoded = InboundEvent | tuple[InboundEvent, ...]
"""One event, or several (a stereo frame split into two tracks; frames a reorder window releases)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One frame for the provider (the back-channel)."""

    data: bytes
    binary: bool = False
    paced_ms: float = 0.0
    """Send no faster than one such frame per this many ms (Vonage: exactly-20 ms audio frames in
    real time); 0 sends at once."""
    clears: bool = False
    """Drop whatever paced frames are still waiting before this one (a ``clear`` / barge-in)."""


class Dialect(Protocol):
    name: ClassVar[str]
    """The provider name (``signalwire``, ``twilio``, ``telnyx``, ``vonage``, ``plivo``,
    ``exotel``, ``jambonz``, ``bandwidth``); the Twilio/SignalWire dialect tells the two apart."""

    def text(self, data: str) -> Decoded:
        """One text frame."""
        ...

    def binary(self, data: bytes) -> Decoded:
        """One binary frame (raw audio for Vonage and jambonz; a violation for JSON providers)."""
        ...

    def close(self) -> Decoded:
        """The socket closed (with or without a ``stop``): whatever the dialect still holds (frames in
        a reorder window), so nothing it accepted is lost."""
        ...

    def encode(self, stream_id: str, message: PlayMessage) -> tuple[Outgoing, ...] | None:
        """The provider's frames for one back-channel message: ``()`` when it is taken but there
        is nothing to send yet (part of a frame, a mark remembered), None when the provider has
        no such message (counted as ``unsupported``)."""
        ...


@dataclass(frozen=True, slots=True)
class StatusRequest:
    """One status callback as received on ``/status``, parsed once by the shell for every
    provider's parser: the JSON body (None when the body is not a JSON object), the form fields
    (query string and url-encoded body merged), and the headers (lower-cased names)."""

    json: Mapping[str, Any] | None
    form: Mapping[str, str]
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One provider status callback, normalised: the body of a ``status`` event."""

    provider: str
    call_id: str
    stream_id: str
    control_id: str
    """The route key the callback's events subject is resolved with (the stream's name, else its id)."""
    state: str
    """The provider's own word for what happened (``streaming``, ``stream-started``,
    ``streaming.started``, ``StartStream``, ``mediaStreamStarted``...)."""
    name: str = ""
    account_id: str = ""
    provider_ts: str | float | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    """Provider details worth passing on (``error``, ``track``, ``node_id``...)."""


class StatusError(ValueError):
    """A callback in a provider's shape that does not validate (answered 400 with the reason)."""


StatusParser = Callable[[StatusRequest], StatusUpdate | None]
"""A provider's status-callback parser: its update, None when the request is not in its shape, or
:class:`StatusError` when it is but does not validate."""


def as_events(decoded: Decoded) -> tuple[InboundEvent, ...]:
    """A dialect's answer as a tuple of events (off the per-frame path)."""
    return decoded if isinstance(decoded, tuple) else (decoded,)


def binary_refused() -> RemoteProtocolError:
    """What a JSON-only provider's dialect raises for a binary frame (close 1003)."""
    return RemoteProtocolError(
        "binary frames are not part of this protocol", reason="binary_frame", close_code=CloseCode.UNSUPPORTED_DATA
    )


def malformed(detail: str) -> RemoteProtocolError:
    """A frame that does not fit the provider's format (close 1007)."""
    return RemoteProtocolError(f"malformed frame: {detail}", reason="malformed", close_code=CloseCode.INVALID_PAYLOAD)

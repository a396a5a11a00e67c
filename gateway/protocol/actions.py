"""What the session asks its shell to do. The session never does I/O; the shell carries these out.

``AudioOut`` is the per-frame action and is kept minimal (slots, no validation): it goes straight
into the stream's bounded buffer. Event bodies are plain dicts serialised by the publisher, so a
``stopped`` body can still receive the buffer's final drop counts before it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.protocol.media import Codec
from sgw_routes.model import Route


@dataclass(slots=True)
class AudioOut:
    """Publish one audio frame."""

    track: str
    subject: str
    payload: bytes
    headers: dict[str, str]
    received: float
    """Unix time the frame was read from the socket (publish latency is measured from it)."""


@dataclass(slots=True)
class EventOut:
    """Publish one JSON lifecycle event (never dropped by the buffer)."""

    kind: str
    subject: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """Everything known once ``start`` is accepted; the shell binds metrics, span and logger to it."""

    call_id: str
    stream_id: str
    account_id: str
    control_id: str
    route: Route
    provider: str
    tracks: tuple[str, ...]
    codec: Codec
    custom_parameters: dict[str, str]
    """Already masked: values of secret parameters are ``***``."""
    playback_subject: str | None = None
    """Where consumers talk back to this stream (the route's playback template, rendered)."""


@dataclass(frozen=True, slots=True)
class Started:
    """The stream was accepted: the shell sets up per-stream observability before any audio."""

    info: StreamInfo


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket with this code and reason; always the last action of a session."""

    code: int
    reason: str


Action = AudioOut | EventOut | Started | Close

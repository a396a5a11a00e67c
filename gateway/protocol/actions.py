"""What the session asks its shell to do. The session never does I/O; the shell carries these out.

Audio is not an action object on the shell's per-frame path: :meth:`StreamSession.media` returns
the updated :class:`~gateway.protocol.session.TrackStats`, whose ``seq`` and ``ts`` the shell
hands to the stream's outbox with the payload. :class:`FrameOut` is the same thing as an action,
for :meth:`StreamSession.receive` (tests and tools drive the session through that one door).
Event bodies are plain dicts, encoded by the shell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.protocol.media import Codec
from sgw_routes.model import Route


@dataclass(frozen=True, slots=True)
class FrameOut:
    """Publish one audio frame (the ``receive`` form of the per-frame path)."""

    track: str
    seq: int
    ts: int
    payload: bytes


@dataclass(slots=True)
class EventOut:
    """Publish one JSON lifecycle event (``error`` and ``stopped`` are ``final``)."""

    kind: str
    subject: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        return self.kind in ("error", "stopped")


@dataclass(frozen=True, slots=True)
class AudioCopy:
    """One more subject set a stream's frames are published on (a route's ``copies``)."""

    subjects: tuple[str, str]
    """By track index, like :attr:`StreamInfo.audio_subjects`."""
    headers: dict[str, str]
    codec: Codec | None = None
    """What the copy carries when transformed; ``None``: the provider's audio, untouched."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """Everything known once ``start`` is accepted; the shell binds its outbox, metrics, span and
    logger to it before any audio."""

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
    audio_subjects: tuple[str, str] = ("", "")
    """The audio subject of track index 0 (``inbound``) and 1 (``outbound``)."""
    events_subject: str = ""
    frame_headers: dict[str, str] = field(default_factory=dict)
    """The headers every audio frame carries besides ``Sgw-Seq`` and ``Sgw-Ts``."""
    published_codec: Codec | None = None
    """What :attr:`audio_subjects` carry when the route transforms; ``None``: the provider's audio."""
    copies: tuple[AudioCopy, ...] = ()

    @property
    def transforms(self) -> bool:
        """Whether frames need more than the provider's payload on the audio subjects."""
        return self.published_codec is not None or bool(self.copies)


@dataclass(frozen=True, slots=True)
class Started:
    """The stream was accepted: the shell sets up its outbox and observability before any audio."""

    info: StreamInfo


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket with this code and reason; always the last action of a session."""

    code: int
    reason: str


Action = FrameOut | EventOut | Started | Close

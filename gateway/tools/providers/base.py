"""What every simulated provider shares: a stream's identity, the writer interface, the back-channel.

A :class:`ProviderWire` is one simulated stream as one provider spells it: the frames it opens
with, each media frame, DTMF, the end, and how it reads what the server sends back (audio to
play, marks to echo, clears) in bidirectional mode. Subclasses own only their provider's
differences. Writers are pure (no sockets, no clocks: the caller passes times in), so each
provider's frames can be checked against its documented examples without a server.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, Literal

import msgspec

from gateway.audio import FRAME_MS, CodecSpec, Signal
from gateway.tools.wire import LaneSource, MediaFrame, Track, TrackChoice

ProviderName = Literal["signalwire", "twilio", "telnyx", "vonage", "plivo", "exotel", "jambonz", "bandwidth"]
MixType = Literal["mono", "mixed", "stereo"]
Phase = Literal["started", "stopped"]

_ENCODER: Final = msgspec.json.Encoder()


def dumps(message: Mapping[str, Any]) -> str:
    """Compact JSON, keys in insertion order (the order of the provider's own examples)."""
    return _ENCODER.encode(message).decode()


def b64(payload: bytes) -> str:
    return base64.b64encode(payload).decode("ascii")


def new_uuid() -> str:
    return str(uuid.uuid4())


class BadBackMessage(ValueError):
    """A server message the provider would not accept (recorded, like the provider's warning)."""


def json_object(data: str | bytes) -> dict[str, Any]:
    """A text frame from the server as a JSON object, or :class:`BadBackMessage`."""
    if isinstance(data, bytes):
        raise BadBackMessage(f"binary frame of {len(data)} bytes on a JSON-only socket")
    try:
        message = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError):
        raise BadBackMessage("text frame is not JSON") from None
    if not isinstance(message, dict):
        raise BadBackMessage("JSON frame is not an object")
    return message


def field_of(message: Mapping[str, Any], *path: str) -> Any:
    """``message[a][b]...`` or :class:`BadBackMessage` naming the missing field."""
    value: Any = message
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise BadBackMessage(f"missing {'.'.join(path)}")
        value = value[key]
    return value


def b64_field(message: Mapping[str, Any], *path: str) -> bytes:
    value = field_of(message, *path)
    if not isinstance(value, str):
        raise BadBackMessage(f"{'.'.join(path)} is not a string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise BadBackMessage(f"{'.'.join(path)} is not base64") from None


# -- what the provider does with a server message (bidirectional mode) ------------------------


@dataclass(frozen=True, slots=True)
class QueueAudio:
    """Audio to play out in real time, after whatever is queued."""

    payload: bytes
    bytes_per_ms: float


@dataclass(frozen=True, slots=True)
class QueueMark:
    """Echo ``name`` (the provider's :meth:`ProviderWire.mark_echo`) once the audio before it has played."""

    name: str


@dataclass(frozen=True, slots=True)
class ClearQueue:
    """Drop the queued audio (and echo pending marks, where the provider does)."""


@dataclass(frozen=True, slots=True)
class SendDigits:
    """The server asked the provider to play DTMF into the call."""

    digits: str


@dataclass(frozen=True, slots=True)
class HangUp:
    """The provider ends the socket: a close frame, or (``abrupt``) a dropped connection."""

    reason: str
    abrupt: bool = False


BackAction = QueueAudio | QueueMark | ClearQueue | SendDigits | HangUp


# -- one stream --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallIds:
    """The provider's identifiers for one stream."""

    call_id: str
    stream_id: str
    """Empty when the provider's wire carries none (Vonage, jambonz): the gateway makes one up."""
    account_id: str


@dataclass(frozen=True, slots=True)
class StreamSpec:
    ids: CallIds
    tracks: tuple[Track, ...]
    codec: CodecSpec
    custom_parameters: Mapping[str, str] = field(default_factory=dict)
    mix_type: MixType = "mono"
    """jambonz only: ``stereo`` interleaves the two tracks in one binary frame."""
    epoch_ms: int = 0
    """Wall-clock milliseconds at the stream's start (Plivo's media timestamps are epoch times)."""


@dataclass(frozen=True, slots=True)
class StatusCallback:
    """One HTTP request the provider makes to its status URL (signed by :mod:`.signing`)."""

    content_type: Literal["application/json", "application/x-www-form-urlencoded"]
    json: Mapping[str, Any] | None = None
    form: Mapping[str, str] | None = None

    def body(self) -> bytes:
        if self.json is not None:
            return _ENCODER.encode(self.json)
        from urllib.parse import urlencode

        return urlencode(dict(self.form or {})).encode()


class ProviderWire(ABC):
    """One simulated stream in one provider's wire format."""

    name: ClassVar[ProviderName]
    frame_ms: ClassVar[int] = FRAME_MS
    first_timestamp: ClassVar[int] = FRAME_MS
    """The first media frame's ``timestamp`` in the provider's own examples (0 or one frame)."""
    default_codec: ClassVar[str] = "PCMU"
    codecs: ClassVar[frozenset[str] | None] = None
    """``Sgw-Codec`` labels the provider can announce; None: any the tools can encode."""
    track_choices: ClassVar[frozenset[TrackChoice]] = frozenset(("inbound", "outbound", "both"))
    subprotocols: ClassVar[tuple[str, ...]] = ()
    dtmf_supported: ClassVar[bool] = True
    echoes_marks_on_clear: ClassVar[bool] = False
    binary_audio: ClassVar[bool] = False

    def __init__(self, stream: StreamSpec) -> None:
        self.stream = stream
        self._sequence = 0

    @classmethod
    def new_ids(cls) -> CallIds:
        return CallIds(new_uuid(), new_uuid(), new_uuid())

    @classmethod
    def check(cls, codec: CodecSpec, track: TrackChoice, mix_type: MixType) -> None:
        """ValueError when the provider cannot send this combination."""
        if cls.codecs is not None and codec.label not in cls.codecs:
            raise ValueError(f"{cls.name} streams {', '.join(sorted(cls.codecs))}, not {codec.label}")
        if track not in cls.track_choices:
            raise ValueError(f"{cls.name} streams the {'/'.join(sorted(cls.track_choices))} track, not {track}")
        if mix_type != "mono":
            raise ValueError(f"--mix-type is jambonz's; {cls.name} has none")

    # -- counters and audio ------------------------------------------------------------------

    def next_sequence(self) -> int:
        """The per-socket message counter: 1 for ``start``, +1 for every later message of any kind."""
        self._sequence += 1
        return self._sequence

    @property
    def samples_per_frame(self) -> int:
        return self.stream.codec.sample_rate * self.frame_ms // 1000

    @property
    def lanes(self) -> tuple[Track, ...]:
        """What the faults and the report count separately: the tracks, one message each per tick."""
        return self.stream.tracks

    def lane_sources(self, signal: Callable[[Track], Signal]) -> dict[Track, LaneSource]:
        """Each lane's frames, from ``signal(track)``: the voice of each track (called once per track)."""
        codec, count = self.stream.codec, self.samples_per_frame

        def source(track: Track) -> LaneSource:
            voice = signal(track)
            return lambda: (codec.encode(voice.read(count)), ())

        return {track: source(track) for track in self.lanes}

    @property
    def playback_bytes_per_ms(self) -> float:
        """The rate at which the back-channel's audio plays (the stream's own codec, by default)."""
        codec = self.stream.codec
        return codec.sample_rate * codec.bytes_per_sample / 1000

    # -- what the provider sends -----------------------------------------------------------------

    def connected(self) -> str | None:
        """The optional first message (``connected``), if the provider sends one; the
        ``no_connected`` fault leaves it out."""
        return None

    @abstractmethod
    def start(self) -> str:
        """``start``, or the first text frame of a binary provider."""

    @abstractmethod
    def media(self, frame: MediaFrame) -> str | bytes:
        """One media message (text), or one binary frame."""

    def dtmf(self, digit: str, duration_ms: int, at_ms: int) -> str:
        """One key press, ``at_ms`` after the stream's start."""
        raise ValueError(f"{self.name} delivers no DTMF on the socket")

    def stop(self) -> str | None:
        """The last message before the close; None: the provider just closes."""
        return None

    # -- what the provider does with the server's messages ---------------------------------------

    @abstractmethod
    def read_back(self, data: str | bytes) -> tuple[BackAction, ...]:
        """One server frame, as the provider would act on it; :class:`BadBackMessage` if refused."""

    def mark_echo(self, name: str) -> str:
        """The message the provider sends when a queued mark is reached."""
        raise NotImplementedError(f"{self.name} has no mark")

    def clear_answer(self) -> str | None:
        """The provider's acknowledgement of a clear, if it sends one."""
        return None

    # -- status callbacks --------------------------------------------------------------------

    def status_callback(
        self, phase: Phase, *, url: str, control_id: str, at: float, variant: str | None
    ) -> StatusCallback | None:
        """The provider's status callback for ``phase`` (None: it posts none). ``url`` is the
        stream's WebSocket URL; ``at`` the wall-clock time; ``variant`` picks a format where the
        provider has several (SignalWire ``swml``/``cxml``, Telnyx ``json``/``texml``);
        ``control_id`` the stream's route key, which the callback names as the stream's name."""
        return None

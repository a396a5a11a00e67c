"""The Bandwidth media-stream wire format (docs/protocols.md sections 6 and 12.5), and its webhooks.

Messages are told apart by ``eventType``: ``start`` with
``metadata.{accountId, callId, streamId, streamName, tracks[{name, mediaFormat}]}`` and
``streamParams`` (the custom parameters), ``media`` with ``track`` and ``payload`` at the top
level (no timestamp: the session counts media time from the bytes), and ``stop``. No
``connected``, no DTMF on the socket.

A ``media`` message that opens with its ``eventType`` (as Bandwidth writes them) decodes straight
into the canonical :class:`Media`, whose fields it shares; any other spelling goes through the
tagged decoder and is converted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Final

import msgspec

from gateway.protocol.dialects import jsonwire
from gateway.protocol.dialects.base import (
    Decoded,
    Outgoing,
    StatusError,
    StatusRequest,
    StatusUpdate,
    binary_refused,
    malformed,
)
from gateway.protocol.events import Counter, InboundEvent, Media, Start, Stop, TrackName
from gateway.protocol.media import DEFAULT_CODEC, Codec, codec_from_media_format
from gateway.protocol.playback import PlayAudio, PlayMessage

PROVIDER: Final = "bandwidth"
_MEDIA_PREFIX: Final = '{"eventType":"media"'


class _MediaFormat(msgspec.Struct, frozen=True):
    encoding: str = "audio/PCMU"
    sampleRate: Annotated[int, msgspec.Meta(gt=0, le=384000)] = 8000  # noqa: N815 - wire name


class _Track(msgspec.Struct, frozen=True):
    name: str = "inbound"
    mediaFormat: _MediaFormat | None = None  # noqa: N815


class _Metadata(msgspec.Struct, frozen=True):
    accountId: str = ""  # noqa: N815
    callId: str = ""  # noqa: N815
    streamId: str = ""  # noqa: N815
    streamName: str = ""  # noqa: N815
    tracks: list[_Track] = []


class _Start(msgspec.Struct, frozen=True, tag_field="eventType", tag="start"):
    metadata: _Metadata | None = None
    streamParams: dict[str, Any] | None = None  # noqa: N815
    sequenceNumber: Counter | None = None  # noqa: N815


class _Media(msgspec.Struct, frozen=True, gc=False, tag_field="eventType", tag="media"):
    payload: bytes
    track: TrackName = "inbound"


class _Stop(msgspec.Struct, frozen=True, tag_field="eventType", tag="stop"):
    sequenceNumber: Counter | None = None  # noqa: N815


_Wire = _Start | _Media | _Stop

_DECODER: Final = msgspec.json.Decoder(_Wire, strict=False)
_MEDIA: Final = msgspec.json.Decoder(Media, strict=False)
_KNOWN: Final = frozenset(("start", "media", "stop"))


def decode(data: str | bytes) -> InboundEvent:
    """One text frame as a canonical event."""
    if isinstance(data, str) and data.startswith(_MEDIA_PREFIX):
        try:
            return _MEDIA.decode(data)  # the per-frame path: the message is the event
        except msgspec.DecodeError:
            pass  # the tagged decoder below says what is wrong with it
    try:
        wire = _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        return jsonwire.fallback(data, exc, "eventType", _KNOWN)
    except RecursionError:  # deep nesting in streamParams: the peer's doing
        raise malformed("nested too deeply") from None
    if isinstance(wire, _Media):
        return Media(payload=wire.payload, track=wire.track)
    if isinstance(wire, _Start):
        return _start(wire)
    return Stop(sequence=wire.sequenceNumber)


def _start(wire: _Start) -> Start:
    meta = wire.metadata
    if meta is None:
        raise malformed("start without metadata")
    if not meta.streamId:
        raise malformed("start without metadata.streamId")
    if not meta.callId:
        raise malformed("start without metadata.callId")
    # Bandwidth gives each track its format; they share one in practice, and one stream has one codec.
    fmt = next((t.mediaFormat for t in meta.tracks if t.mediaFormat is not None), None)
    codec = DEFAULT_CODEC if fmt is None else codec_from_media_format(fmt.encoding, fmt.sampleRate)
    return Start(
        stream_id=meta.streamId,
        call_id=meta.callId,
        account_id=meta.accountId,
        tracks=jsonwire.tracks(t.name for t in meta.tracks),
        codec=codec,
        custom_parameters=jsonwire.params(wire.streamParams),
        sequence=wire.sequenceNumber,
        provider=PROVIDER,
    )


def _content_type(codec: Codec) -> str | None:
    """``playAudio``'s content type for the stream's codec: μ-law, or 16-bit PCM at 8/16/24 kHz
    (docs/protocols.md section 6.3); None for anything Bandwidth does not take back."""
    if codec.name == "PCMU":
        return "audio/pcmu"
    if codec.name == "L16":
        return f"audio/pcm;rate={codec.sample_rate};channels=1;bit-depth=16;endian=little;encoding=signed"
    return None


class _OutMedia(msgspec.Struct):
    contentType: str  # noqa: N815 - wire name
    payload: bytes


class _Out(msgspec.Struct, omit_defaults=True):
    eventType: str  # noqa: N815
    media: _OutMedia | None = None


_ENCODER: Final = msgspec.json.Encoder()
_CLEAR: Final = Outgoing(_ENCODER.encode(_Out("clear")), clears=True)


class BandwidthDialect:
    """Bandwidth media streams; the back-channel plays audio in the stream's codec and clears."""

    name: ClassVar[str] = PROVIDER
    __slots__ = ("_content_type",)

    def __init__(self) -> None:
        self._content_type = _content_type(DEFAULT_CODEC)

    def text(self, data: str) -> Decoded:
        event = decode(data)
        if type(event) is Start:
            self._content_type = _content_type(event.codec)
        return event

    def close(self) -> Decoded:
        return ()

    def binary(self, data: bytes) -> Decoded:
        raise binary_refused()

    def encode(self, stream_id: str, message: PlayMessage) -> tuple[Outgoing, ...] | None:
        """``playAudio`` and ``clear``; Bandwidth has no mark and takes no DTMF."""
        if isinstance(message, PlayAudio):
            if self._content_type is None:
                return None  # a codec Bandwidth cannot play back
            out = _Out("playAudio", media=_OutMedia(self._content_type, message.payload))
            return (Outgoing(_ENCODER.encode(out)),)
        if message.kind == "clear":
            return (_CLEAR,)
        return None


# -- webhooks (docs/protocols.md section 6.1) ------------------------------------------------------

_EVENTS: Final = frozenset(("mediaStreamStarted", "mediaStreamRejected", "mediaStreamStopped"))


def parse_status(request: StatusRequest) -> StatusUpdate | None:
    """A ``streamEventUrl`` webhook: JSON with ``eventType`` ``mediaStreamStarted``,
    ``mediaStreamRejected`` or ``mediaStreamStopped``, ``callId``, ``accountId`` and
    ``mediaStream.{id, name, destination}`` (as form fields too, for ``streamEventMethod`` GET)."""
    fields = jsonwire.fields_with(request.json, request.form, "eventType")
    if fields is None:
        return None
    event = jsonwire.text(fields.get("eventType"))
    if event not in _EVENTS:
        raise StatusError(f"unsupported eventType {event[:64]!r}")
    call_id = jsonwire.required(fields, "callId")
    stream = fields.get("mediaStream")
    details: Mapping[str, Any] = stream if isinstance(stream, Mapping) else {}
    stream_id = jsonwire.first(details, "id")
    name = jsonwire.first(details, "name")
    extra = {
        key: value
        for key, value in (
            ("cause", jsonwire.first(fields, "cause")),
            ("error", jsonwire.first(fields, "errorMessage")),
        )
        if value
    }
    return StatusUpdate(
        provider=PROVIDER,
        call_id=call_id,
        stream_id=stream_id,
        control_id=jsonwire.path_key(jsonwire.first(details, "destination")) or name or stream_id or call_id,
        state=event,
        name=name,
        account_id=jsonwire.first(fields, "accountId"),
        provider_ts=jsonwire.first(fields, "eventTime") or None,
        extra=extra,
    )

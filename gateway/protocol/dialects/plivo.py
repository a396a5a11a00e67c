"""The Plivo Audio Streams wire format (docs/protocols.md sections 5 and 12.4), and its status callbacks.

camelCase with counters as JSON numbers (decoded laxly all the same): ``start`` with
``start.{callId, streamId, accountId, tracks, mediaFormat}`` and the ``extra_headers`` string
(``k=v,k2=v2``, the stream's custom parameters); ``media`` whose ``media`` object decodes straight
into the canonical :class:`Media`; ``dtmf``; ``playedStream`` (a checkpoint reached: a
:class:`Mark`; ``played`` in one support article); ``clearedAudio`` (the answer to
``clearAudio``: no event). There is no ``connected`` and perhaps no ``stop`` (handled when it
comes; the close ends the stream anyway).

``media.timestamp`` is a Unix epoch in milliseconds: the dialect makes it relative to the stream's
first media frame (one base for both tracks, so they stay aligned), since ``Sgw-Ts`` is always
milliseconds since the stream started.
"""

from __future__ import annotations

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
from gateway.protocol.events import Counter, Dtmf, Mark, Media, Start, Stop
from gateway.protocol.media import Codec, codec_from_media_format
from gateway.protocol.playback import PlayAudio, PlayMessage

PROVIDER: Final = "plivo"
_DEFAULT_ENCODING: Final = "audio/x-l16"
_DEFAULT_RATE: Final = 8000
_CONTENT_TYPES: Final = {"PCMU": "audio/x-mulaw", "L16": "audio/x-l16"}
"""What ``playAudio`` must say for the stream's codec (nothing is heard when it does not match)."""


class _MediaFormat(msgspec.Struct, frozen=True):
    encoding: str = _DEFAULT_ENCODING
    sampleRate: Annotated[int, msgspec.Meta(gt=0, le=384000)] | None = None  # noqa: N815 - wire name


class _StartBody(msgspec.Struct, frozen=True):
    callId: str = ""  # noqa: N815
    streamId: str = ""  # noqa: N815
    accountId: str = ""  # noqa: N815
    tracks: list[str] = []
    mediaFormat: _MediaFormat | None = None  # noqa: N815


class _DtmfBody(msgspec.Struct, frozen=True):
    digit: str


class _Start(msgspec.Struct, frozen=True, tag_field="event", tag="start"):
    sequenceNumber: Counter | None = None  # noqa: N815
    streamId: str = ""  # noqa: N815
    start: _StartBody | None = None
    extra_headers: str | dict[str, Any] | None = None


class _Media(msgspec.Struct, frozen=True, gc=False, tag_field="event", tag="media"):
    media: Media | None = None
    """The canonical event itself; only its timestamp is rebased."""


class _Dtmf(msgspec.Struct, frozen=True, tag_field="event", tag="dtmf"):
    sequenceNumber: Counter | None = None  # noqa: N815
    dtmf: _DtmfBody | None = None


class _Played(msgspec.Struct, frozen=True, tag_field="event", tag="playedStream"):
    name: str
    sequenceNumber: Counter | None = None  # noqa: N815


class _PlayedAlias(_Played, frozen=True, tag="played"):
    """The name one of Plivo's support articles gives the checkpoint answer."""


class _Cleared(msgspec.Struct, frozen=True, tag_field="event", tag="clearedAudio"):
    pass


class _Stop(msgspec.Struct, frozen=True, tag_field="event", tag="stop"):
    sequenceNumber: Counter | None = None  # noqa: N815


_Wire = _Start | _Media | _Dtmf | _Played | _PlayedAlias | _Cleared | _Stop

_DECODER: Final = msgspec.json.Decoder(_Wire, strict=False)
_KNOWN: Final = frozenset(("start", "media", "dtmf", "playedStream", "played", "clearedAudio", "stop"))
_set = msgspec.structs.force_setattr


def _start(wire: _Start) -> tuple[Start, str]:
    """The canonical start, and the wire encoding ``playAudio`` must repeat."""
    start = wire.start
    if start is None:
        raise malformed("start without a start object")
    stream_id = start.streamId or wire.streamId
    if not stream_id:
        raise malformed("start without streamId")
    if not start.callId:
        raise malformed("start without callId")
    fmt = start.mediaFormat or _MediaFormat()
    encoding, rate = jsonwire.content_type(fmt.encoding)  # also takes "audio/x-l16;rate=16000"
    codec = codec_from_media_format(encoding, fmt.sampleRate or rate or _DEFAULT_RATE)
    extra = wire.extra_headers
    parameters = jsonwire.pairs(extra) if isinstance(extra, str) else jsonwire.params(extra)
    event = Start(
        stream_id=stream_id,
        call_id=start.callId,
        account_id=start.accountId,
        tracks=jsonwire.tracks(start.tracks),
        codec=codec,
        custom_parameters=parameters,
        sequence=wire.sequenceNumber,
        provider=PROVIDER,
    )
    return event, encoding


class _OutMedia(msgspec.Struct):
    contentType: str  # noqa: N815 - wire name
    sampleRate: int  # noqa: N815
    payload: bytes


class _Out(msgspec.Struct, omit_defaults=True):
    event: str
    streamId: str = ""  # noqa: N815
    media: _OutMedia | None = None
    name: str = ""
    dtmf: str = ""


_ENCODER: Final = msgspec.json.Encoder()


class PlivoDialect:
    """Plivo Audio Streams: epoch timestamps rebased, ``extra_headers`` parsed, the back-channel in
    the stream's own format."""

    name: ClassVar[str] = PROVIDER
    __slots__ = ("_base", "_content_type", "_rate")

    def __init__(self) -> None:
        self._base = -1
        """The first media frame's epoch timestamp; -1 until it arrives."""
        self._content_type = _DEFAULT_ENCODING
        self._rate = _DEFAULT_RATE

    def text(self, data: str) -> Decoded:
        try:
            wire = _DECODER.decode(data)
        except msgspec.DecodeError as exc:
            return jsonwire.fallback(data, exc, "event", _KNOWN)
        except RecursionError:
            raise malformed("nested too deeply") from None
        if type(wire) is _Media and wire.media is not None:
            media = wire.media
            ts = media.timestamp
            if ts is not None:
                base = self._base
                if base < 0:
                    base = self._base = ts
                # The struct is ours until returned: rebasing it in place saves a copy per frame.
                _set(media, "timestamp", ts - base if ts >= base else 0)
            return media
        return self._convert(wire)

    def _convert(self, wire: _Wire) -> Decoded:
        if isinstance(wire, _Media):
            raise malformed("media without a media object")
        if isinstance(wire, _Start):
            event, encoding = _start(wire)
            self._remember(event.codec, encoding)
            return event
        if isinstance(wire, _Dtmf):
            if wire.dtmf is None:
                raise malformed("dtmf without a dtmf object")
            return Dtmf(digit=wire.dtmf.digit[:8], sequence=wire.sequenceNumber)
        if isinstance(wire, _Played):
            return Mark(name=wire.name, sequence=wire.sequenceNumber)
        if isinstance(wire, _Cleared):
            return ()  # the answer to our clearAudio: nothing for consumers
        return Stop(sequence=wire.sequenceNumber)

    def _remember(self, codec: Codec, encoding: str) -> None:
        self._content_type = _CONTENT_TYPES.get(codec.name, encoding)
        self._rate = codec.sample_rate

    def close(self) -> Decoded:
        return ()

    def binary(self, data: bytes) -> Decoded:
        raise binary_refused()

    def encode(self, stream_id: str, message: PlayMessage) -> tuple[Outgoing, ...] | None:
        """``playAudio`` in the stream's content type and rate, ``checkpoint``, ``clearAudio``,
        ``sendDTMF`` (docs/protocols.md section 5.3)."""
        if isinstance(message, PlayAudio):
            out = _Out("playAudio", media=_OutMedia(self._content_type, self._rate, message.payload))
        elif message.kind == "mark":
            out = _Out("checkpoint", streamId=stream_id, name=message.value)
        elif message.kind == "clear":
            return (Outgoing(_ENCODER.encode(_Out("clearAudio", streamId=stream_id)), clears=True),)
        else:
            out = _Out("sendDTMF", dtmf=message.value)
        return (Outgoing(_ENCODER.encode(out)),)


# -- status callbacks (docs/protocols.md section 5.4) ----------------------------------------------

_EVENTS: Final = frozenset(("StartStream", "StopStream", "DroppedStream", "DegradedStream"))


def parse_status(request: StatusRequest) -> StatusUpdate | None:
    """A ``statusCallbackUrl`` request: ``Event`` (``StartStream``, ``StopStream``,
    ``DroppedStream``, ``DegradedStream``) with the call's ``CallUUID`` and the ``StreamID``, as
    form fields (POST or GET) or JSON."""
    fields = jsonwire.fields_with(request.json, request.form, "Event")
    if fields is None:
        return None
    event = jsonwire.text(fields.get("Event"))
    if event not in _EVENTS:
        raise StatusError(f"unknown Event {event[:32]!r}")
    call_id = jsonwire.required(fields, "CallUUID", "CallUuid", "call_uuid")
    stream_id = jsonwire.first(fields, "StreamID", "StreamId", "stream_id")
    url = jsonwire.first(fields, "ServiceURL", "ServiceUrl", "service_url")
    extra = {
        key: value
        for key, value in (
            ("error", jsonwire.first(fields, "Error", "ErrorMessage", "Reason")),
            ("track", jsonwire.first(fields, "AudioTrack", "audio_track")),
        )
        if value
    }
    return StatusUpdate(
        provider=PROVIDER,
        call_id=call_id,
        stream_id=stream_id,
        control_id=jsonwire.path_key(url) or stream_id or call_id,
        state=event,
        account_id=jsonwire.first(fields, "AuthID", "auth_id"),
        provider_ts=jsonwire.first(fields, "Timestamp", "timestamp") or None,
        extra=extra,
    )

"""The Exotel AgentStream wire format (docs/protocols.md sections 7 and 12.6).

snake_case Twilio: a bare ``connected``, ``start`` with ``stream_sid``,
``start.{call_sid, account_sid, custom_parameters, media_format}`` (``audio/x-raw`` with
``bit_rate`` 16 is 16-bit PCM: ``L16/<sample_rate>``; rates and bit rates come as strings), ``media``
whose ``media`` object decodes straight into the canonical :class:`Media` (``track`` only in
extended setups, else ``inbound``), ``dtmf`` and ``mark`` (Voicebot), ``stop``. Frames of about
100 ms are kept whole: one NATS message per Exotel frame.

The back-channel's audio must come in multiples of 320 bytes (at most 100 KiB per message): what
does not fill the last 320 bytes is kept and goes out with the next audio; a ``mark`` first sends
that remainder padded with silence, so the mark follows all the audio; ``clear`` drops it.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final

import msgspec

from gateway.protocol.dialects import jsonwire
from gateway.protocol.dialects.base import Decoded, Outgoing, binary_refused, malformed
from gateway.protocol.events import Connected, Counter, Dtmf, InboundEvent, Mark, Media, Start, Stop
from gateway.protocol.media import Codec, codec_from_media_format
from gateway.protocol.playback import PlayAudio, PlayMessage

PROVIDER: Final = "exotel"
CHUNK: Final = 320
"""Exotel takes audio in multiples of this many bytes."""
MAX_MESSAGE: Final = 320 * 320
"""100 KiB, Exotel's largest audio message, itself a multiple of :data:`CHUNK`."""


class _MediaFormat(msgspec.Struct, frozen=True):
    encoding: str = "audio/x-raw"
    sample_rate: Annotated[int, msgspec.Meta(gt=0, le=384000)] = 8000
    bit_rate: Annotated[int, msgspec.Meta(gt=0, le=64)] | None = None


class _StartBody(msgspec.Struct, frozen=True):
    stream_sid: str = ""
    call_sid: str = ""
    account_sid: str = ""
    custom_parameters: dict[str, Any] | None = None
    media_format: _MediaFormat | None = None


class _DtmfBody(msgspec.Struct, frozen=True):
    digit: str
    duration: Annotated[float, msgspec.Meta(ge=0)] | None = None


class _MarkBody(msgspec.Struct, frozen=True):
    name: str


class _Connected(msgspec.Struct, frozen=True, tag_field="event", tag="connected"):
    pass


class _Start(msgspec.Struct, frozen=True, tag_field="event", tag="start"):
    sequence_number: Counter | None = None
    stream_sid: str = ""
    start: _StartBody | None = None


class _Media(msgspec.Struct, frozen=True, gc=False, tag_field="event", tag="media"):
    media: Media | None = None
    """The canonical event itself; nothing else of the message is decoded on the per-frame path."""


class _Dtmf(msgspec.Struct, frozen=True, tag_field="event", tag="dtmf"):
    sequence_number: Counter | None = None
    dtmf: _DtmfBody | None = None


class _Mark(msgspec.Struct, frozen=True, tag_field="event", tag="mark"):
    sequence_number: Counter | None = None
    mark: _MarkBody | None = None


class _Stop(msgspec.Struct, frozen=True, tag_field="event", tag="stop"):
    sequence_number: Counter | None = None


_Wire = _Connected | _Start | _Media | _Dtmf | _Mark | _Stop

_DECODER: Final = msgspec.json.Decoder(_Wire, strict=False)
_KNOWN: Final = frozenset(("connected", "start", "media", "dtmf", "mark", "stop"))


def decode(data: str | bytes) -> InboundEvent:
    """One text frame as a canonical event."""
    try:
        wire = _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        return jsonwire.fallback(data, exc, "event", _KNOWN)
    except RecursionError:  # deep nesting in custom_parameters: the peer's doing
        raise malformed("nested too deeply") from None
    if type(wire) is _Media and wire.media is not None:
        return wire.media
    return _convert(wire)


def _convert(wire: _Wire) -> InboundEvent:
    if isinstance(wire, _Media):
        raise malformed("media without a media object")
    if isinstance(wire, _Start):
        return _start(wire)
    if isinstance(wire, _Connected):
        return Connected()
    if isinstance(wire, _Dtmf):
        if wire.dtmf is None:
            raise malformed("dtmf without a dtmf object")
        return Dtmf(digit=wire.dtmf.digit[:8], duration_ms=wire.dtmf.duration, sequence=wire.sequence_number)
    if isinstance(wire, _Mark):
        if wire.mark is None:
            raise malformed("mark without a mark object")
        return Mark(name=wire.mark.name, sequence=wire.sequence_number)
    return Stop(sequence=wire.sequence_number)


def _codec(fmt: _MediaFormat | None) -> Codec:
    if fmt is None:
        return Codec("L16", 8000)  # Exotel's default: 16-bit PCM at 8 kHz
    if fmt.encoding.strip().lower() == "audio/x-raw" and fmt.bit_rate in (None, 16):
        return Codec("L16", fmt.sample_rate)
    # μ-law in extended setups; raw audio of another width keeps its own label ("RAW/8000").
    return codec_from_media_format(fmt.encoding, fmt.sample_rate)


def _start(wire: _Start) -> Start:
    start = wire.start
    if start is None:
        raise malformed("start without a start object")
    stream_id = start.stream_sid or wire.stream_sid
    if not stream_id:
        raise malformed("start without stream_sid")
    if not start.call_sid:
        raise malformed("start without call_sid")
    return Start(
        stream_id=stream_id,
        call_id=start.call_sid,
        account_id=start.account_sid,
        tracks=("inbound",),  # no track list; an extended setup names each frame's track
        codec=_codec(start.media_format),
        custom_parameters=jsonwire.params(start.custom_parameters),
        sequence=wire.sequence_number,
        provider=PROVIDER,
    )


class _OutMedia(msgspec.Struct):
    payload: bytes


class _OutMark(msgspec.Struct):
    name: str


class _Out(msgspec.Struct, omit_defaults=True):
    event: str
    stream_sid: str
    media: _OutMedia | None = None
    mark: _OutMark | None = None


_ENCODER: Final = msgspec.json.Encoder()


class ExotelDialect:
    """Exotel AgentStream; the back-channel re-cuts audio into multiples of 320 bytes."""

    name: ClassVar[str] = PROVIDER
    __slots__ = ("_rest", "_silence")

    def __init__(self) -> None:
        self._rest = b""
        """Audio the last message left over (under 320 bytes), sent with the next."""
        self._silence = jsonwire.silence(_codec(None))

    def text(self, data: str) -> Decoded:
        event = decode(data)
        if type(event) is Start:
            self._silence = jsonwire.silence(event.codec)
        return event

    def close(self) -> Decoded:
        return ()

    def binary(self, data: bytes) -> Decoded:
        raise binary_refused()

    def encode(self, stream_id: str, message: PlayMessage) -> tuple[Outgoing, ...] | None:
        """``media`` in multiples of 320 bytes, ``mark`` after all the audio, ``clear``; no DTMF.
        Audio that does not yet fill 320 bytes is held for the next message (nothing to send yet)."""
        if isinstance(message, PlayAudio):
            audio = self._rest + message.payload if self._rest else message.payload
            whole = len(audio) - len(audio) % CHUNK
            self._rest = audio[whole:]
            return tuple(
                self._media(stream_id, audio[i : min(i + MAX_MESSAGE, whole)]) for i in range(0, whole, MAX_MESSAGE)
            )
        if message.kind == "mark":
            mark = Outgoing(_ENCODER.encode(_Out("mark", stream_id, mark=_OutMark(message.value))))
            if not self._rest:
                return (mark,)
            padded = self._rest + self._silence * (CHUNK - len(self._rest))
            self._rest = b""
            return (self._media(stream_id, padded), mark)
        if message.kind == "clear":
            self._rest = b""
            return (Outgoing(_ENCODER.encode(_Out("clear", stream_id)), clears=True),)
        return None

    @staticmethod
    def _media(stream_id: str, audio: bytes) -> Outgoing:
        return Outgoing(_ENCODER.encode(_Out("media", stream_id, media=_OutMedia(audio))))

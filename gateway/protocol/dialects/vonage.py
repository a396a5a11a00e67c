"""The Vonage Voice API WebSocket (docs/protocols.md sections 4 and 12.3).

Vonage opens with one text frame, ``websocket:connected``, holding the audio format
(``content-type: audio/l16;rate=16000``) and the NCCO ``headers`` flattened in at the top level.
It becomes the stream's :class:`Start`: a generated stream id (Vonage has none), ``call_id`` from
the first of the headers ``call_id``, ``uuid``, ``conversation_uuid`` (else the stream id), the
other headers as custom parameters, track ``inbound``, codec ``L16/<rate>`` (8000 or 16000 Hz, and
24000, which some integrations use). Then every binary frame (16-bit little-endian PCM, 20 ms) is
one :class:`Media` without a timestamp: the session counts ``Sgw-Ts`` from the bytes. Between
them, text frames: ``websocket:dtmf`` (``digit``, or ``dtmf`` in some integrations) is a
:class:`Dtmf`; ``websocket:notify`` is the echo of a consumer's mark (the gateway puts the mark's
name in the notify payload as ``{"name": ...}``) and becomes a :class:`Mark`; ``websocket:cleared``
acknowledges a clear and produces nothing. There is no stop message: the socket's close ends the
stream.

Refused: a binary frame before ``websocket:connected`` (1008, ``media_before_start``), a binary
frame of an odd length (1007, ``malformed``), a content type other than L16 at a supported rate
(1003, ``unsupported_format``), a second ``websocket:connected`` (1008, ``duplicate_start``), text
that is not a JSON object with an ``event`` (1007). An empty binary frame carries no audio and is
:class:`Ignored` (counted).

Back-channel: Vonage takes audio only as binary frames of exactly 20 ms (320/640/960 bytes) in real
time, so consumer audio is cut into such frames, sent paced (``paced_ms=20``), and whatever is left
over is kept for the stream's next audio message. A mark first pads that remainder with silence to
a whole frame (so every byte before the mark is sent), then sends ``{"action":"notify"}``, which
waits in the pacer behind the audio before it. A clear drops the remainder and sends
``{"action":"clear"}`` ahead of everything still waiting. Vonage has no DTMF message.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Final

import msgspec

from gateway.errors import CloseCode, RemoteProtocolError
from gateway.protocol.dialects.base import Decoded, Outgoing, malformed
from gateway.protocol.events import Dtmf, Ignored, Mark, Media, Start
from gateway.protocol.media import Codec
from gateway.protocol.playback import PlayAudio, PlayMessage

_RATES: Final = frozenset((8000, 16000, 24000))
FRAME_MS: Final = 20
"""Every binary frame to Vonage is exactly this long."""
_CALL_ID_HEADERS: Final = ("call_id", "uuid", "conversation_uuid")
_NOT_PARAMETERS: Final = frozenset(("event", "content-type"))


class _DtmfBody(msgspec.Struct, frozen=True):
    digit: str | int
    duration: Annotated[float, msgspec.Meta(ge=0)] | None = None


class _Dtmf(msgspec.Struct, frozen=True, tag_field="event", tag="websocket:dtmf"):
    digit: str | int | None = None
    dtmf: str | int | _DtmfBody | None = None
    """The variant some integrations read: the digit (or an object with it) under ``dtmf``."""
    duration: Annotated[float, msgspec.Meta(ge=0)] | None = None


class _Notify(msgspec.Struct, frozen=True, tag_field="event", tag="websocket:notify"):
    payload: dict[str, Any] | None = None


class _Cleared(msgspec.Struct, frozen=True, tag_field="event", tag="websocket:cleared"):
    pass


class _Connected(msgspec.Struct, frozen=True, tag_field="event", tag="websocket:connected"):
    pass


_Wire = _Dtmf | _Notify | _Cleared | _Connected


class _Probe(msgspec.Struct, frozen=True):
    event: Any = None


_DECODER: Final = msgspec.json.Decoder(_Wire, strict=False)
_PROBE: Final = msgspec.json.Decoder(_Probe)
_HEADERS: Final = msgspec.json.Decoder(dict[str, Any])
_KNOWN: Final = frozenset(("websocket:dtmf", "websocket:notify", "websocket:cleared", "websocket:connected"))


class _NotifyPayload(msgspec.Struct):
    name: str


class _NotifyAction(msgspec.Struct):
    payload: _NotifyPayload
    action: str = "notify"


_ENCODER: Final = msgspec.json.Encoder()
_CLEAR: Final = Outgoing(b'{"action":"clear"}', clears=True)


def _new_stream_id() -> str:
    return str(uuid.uuid4())


def _param(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def _unsupported(content_type: str) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"unsupported content-type {content_type[:48]!r}: audio/l16 with rate 8000, 16000 or 24000",
        reason="unsupported_format",
        close_code=CloseCode.UNSUPPORTED_DATA,
    )


def l16_rate(content_type: Any) -> int:
    """The sample rate of ``audio/l16;rate=N`` (any case, any spacing); refused otherwise."""
    if not isinstance(content_type, str):
        raise malformed("websocket:connected without a content-type string")
    media_type, *parameters = content_type.split(";")
    rate = ""
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "rate":
            rate = value.strip()
    if media_type.strip().lower() != "audio/l16" or not rate.isdigit() or int(rate) not in _RATES:
        raise _unsupported(content_type)
    return int(rate)


def _decode(data: str) -> _Wire | Ignored:
    try:
        try:
            return _DECODER.decode(data)
        except msgspec.DecodeError as exc:
            probe = _PROBE.decode(data)  # a DecodeError here is reported below, as the first one
            if isinstance(probe.event, str) and probe.event not in _KNOWN:
                return Ignored(kind="unknown_event")
            raise malformed(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise malformed(str(exc)) from None
    except RecursionError:
        raise malformed("nested too deeply") from None


def _dtmf(wire: _Dtmf) -> Dtmf:
    digit, duration = wire.digit, wire.duration
    if isinstance(wire.dtmf, _DtmfBody):
        digit = wire.dtmf.digit if digit is None else digit
        duration = wire.dtmf.duration if duration is None else duration
    elif digit is None:
        digit = wire.dtmf
    if digit is None or digit == "":
        raise malformed("websocket:dtmf without a digit")
    return Dtmf(digit=str(digit)[:8], duration_ms=duration)


class VonageDialect:
    """One Vonage WebSocket: the audio format from its first frame, and the back-channel's
    leftover bytes (less than one 20 ms frame)."""

    name: ClassVar[str] = "vonage"
    __slots__ = ("_frame_bytes", "_new_id", "_rate", "_remainder")

    def __init__(self, new_id: Callable[[], str] = _new_stream_id) -> None:
        self._new_id = new_id
        self._rate = 0
        """0 until ``websocket:connected``: binary frames before it are refused."""
        self._frame_bytes = 0
        self._remainder = b""

    def text(self, data: str) -> Decoded:
        wire = _decode(data)
        if isinstance(wire, _Dtmf):
            return _dtmf(wire)
        if isinstance(wire, _Notify):
            name = (wire.payload or {}).get("name")
            # A notify without our name is not one of the gateway's marks: counted, not published.
            return Mark(name=name) if isinstance(name, str) and name else Ignored(kind="foreign_notify")
        if isinstance(wire, _Cleared):
            return ()  # the ack of a clear the gateway sent: nothing for consumers
        if isinstance(wire, _Connected):
            return self._connected(data)
        return wire  # an unknown event kind: Ignored

    def _connected(self, data: str) -> Start:
        if self._rate:
            raise RemoteProtocolError("protocol violation: duplicate websocket:connected", reason="duplicate_start")
        try:
            headers = _HEADERS.decode(data)
        except RecursionError:
            raise malformed("nested too deeply") from None
        rate = l16_rate(headers.get("content-type"))
        stream_id = self._new_id()
        call_id = next(
            (_param(headers[key]) for key in _CALL_ID_HEADERS if headers.get(key) not in (None, "")), stream_id
        )
        self._rate = rate
        self._frame_bytes = rate // 1000 * 2 * FRAME_MS
        return Start(
            stream_id=stream_id,
            call_id=call_id,
            account_id="",
            tracks=("inbound",),
            codec=Codec("L16", rate),
            custom_parameters={key: _param(value) for key, value in headers.items() if key not in _NOT_PARAMETERS},
            provider="vonage",
        )

    def binary(self, data: bytes) -> Decoded:
        if not self._rate or len(data) & 1 or not data:
            return self._odd_binary(data)
        return Media(payload=data, track="inbound")

    def _odd_binary(self, data: bytes) -> Decoded:
        if not self._rate:
            raise RemoteProtocolError(
                "protocol violation: binary audio before websocket:connected", reason="media_before_start"
            )
        if not data:
            return Ignored(kind="empty_frame")
        raise malformed(f"binary frame of {len(data)} bytes is not whole 16-bit samples")

    def close(self) -> Decoded:
        return ()

    def encode(self, stream_id: str, message: PlayMessage) -> tuple[Outgoing, ...] | None:
        """Audio as exactly-20 ms paced binary frames (the rest kept for the next message), a mark
        as ``notify`` after the padded remainder, a clear as ``clear``; no DTMF."""
        if not self._frame_bytes:
            return ()  # no audio format yet (the shell subscribes only after start)
        if isinstance(message, PlayAudio):
            return self._audio(message.payload)
        if message.kind == "mark":
            notify = Outgoing(_ENCODER.encode(_NotifyAction(_NotifyPayload(message.value))))
            return (*self._pad_remainder(), notify)
        if message.kind == "clear":
            self._remainder = b""
            return (_CLEAR,)
        return None

    def _audio(self, payload: bytes) -> tuple[Outgoing, ...]:
        size = self._frame_bytes
        audio = self._remainder + payload if self._remainder else payload
        whole = len(audio) - len(audio) % size
        self._remainder = audio[whole:]
        return tuple(Outgoing(audio[i : i + size], binary=True, paced_ms=FRAME_MS) for i in range(0, whole, size))

    def _pad_remainder(self) -> tuple[Outgoing, ...]:
        remainder = self._remainder
        if not remainder:
            return ()
        self._remainder = b""
        return (Outgoing(remainder + bytes(self._frame_bytes - len(remainder)), binary=True, paced_ms=FRAME_MS),)

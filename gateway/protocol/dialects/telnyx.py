"""The Telnyx wire format (docs/protocols.md sections 3 and 12.2), and its status callbacks.

snake_case Twilio: ``connected`` (``version`` only), ``start`` with ``start.call_control_id``,
``stream_id`` and ``start.media_format.{encoding, sample_rate}`` (``PCMU``, ``PCMA``, ``L16``, or
the older ``audio/x-*`` names; ``G722``, ``OPUS``, ``AMR-WB`` pass through labelled), ``media``
whose ``media`` object decodes straight into the canonical :class:`Media`, ``dtmf``, ``mark``,
``error`` (Telnyx complaining, mostly about our back-channel: a :class:`ProviderError`, the stream
stays open) and ``stop``. Counters are lax (strings or numbers).

Telnyx does not promise frame order. A reorder window per track (:class:`_Window`, about 100 ms)
releases frames in ``media.chunk`` order: a frame that skips ahead waits for the missing one for
at most :data:`WINDOW` later frames; each frame that arrived after a later one yields a
:class:`Reordered` (the session counts it). Nothing is lost: the window is flushed before ``stop``
and by :meth:`TelnyxDialect.close`; a frame older than what was already released is published as
it comes, and the session counts it by its timestamp (a duplicate, or a late frame filling a gap).
"""

from __future__ import annotations

import heapq
import itertools
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
from gateway.protocol.events import (
    Connected,
    Counter,
    Dtmf,
    InboundEvent,
    Mark,
    Media,
    ProviderError,
    Reordered,
    Start,
    Stop,
)
from gateway.protocol.media import DEFAULT_CODEC, codec_from_media_format
from gateway.protocol.playback import PlayAudio, PlayMessage

PROVIDER: Final = "telnyx"
WINDOW: Final = 5
"""Frames held per track while one is missing: 100 ms of 20 ms frames."""


class _MediaFormat(msgspec.Struct, frozen=True):
    encoding: str = "PCMU"
    sample_rate: Annotated[int, msgspec.Meta(gt=0, le=384000)] = 8000
    channels: Annotated[int, msgspec.Meta(ge=1, le=8)] = 1


class _Parameter(msgspec.Struct, frozen=True):
    name: str
    value: Any = ""


class _StartBody(msgspec.Struct, frozen=True):
    call_control_id: str = ""
    user_id: str = ""
    custom_parameters: dict[str, Any] | list[_Parameter] | None = None
    """An object in every example; the ``[{name, value}]`` list the API takes is accepted too."""
    media_format: _MediaFormat | None = None


class _DtmfBody(msgspec.Struct, frozen=True):
    digit: str


class _MarkBody(msgspec.Struct, frozen=True):
    name: str


class _ErrorBody(msgspec.Struct, frozen=True):
    code: int | None = None
    title: str = ""
    detail: str = ""


class _Connected(msgspec.Struct, frozen=True, tag_field="event", tag="connected"):
    version: str = ""


class _Start(msgspec.Struct, frozen=True, tag_field="event", tag="start"):
    sequence_number: Counter | None = None
    stream_id: str = ""
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


class _Error(msgspec.Struct, frozen=True, tag_field="event", tag="error"):
    payload: _ErrorBody | None = None


class _Stop(msgspec.Struct, frozen=True, tag_field="event", tag="stop"):
    sequence_number: Counter | None = None


_Wire = _Connected | _Start | _Media | _Dtmf | _Mark | _Error | _Stop

_DECODER: Final = msgspec.json.Decoder(_Wire, strict=False)
_KNOWN: Final = frozenset(("connected", "start", "media", "dtmf", "mark", "error", "stop"))
_TRACK_INDEX: Final = {"inbound": 0, "inbound_track": 0, "outbound": 1, "outbound_track": 1}
_TRACK_NAMES: Final = ("inbound", "outbound")


def decode(data: str | bytes) -> InboundEvent:
    """One text frame as a canonical event (no reordering: that is the dialect's)."""
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
        return Connected(version=wire.version)
    if isinstance(wire, _Dtmf):
        if wire.dtmf is None:
            raise malformed("dtmf without a dtmf object")
        return Dtmf(digit=wire.dtmf.digit[:8], sequence=wire.sequence_number)
    if isinstance(wire, _Mark):
        if wire.mark is None:
            raise malformed("mark without a mark object")
        return Mark(name=wire.mark.name, sequence=wire.sequence_number)
    if isinstance(wire, _Error):
        body = wire.payload or _ErrorBody()
        return ProviderError(code=body.code, title=body.title[:128], detail=body.detail[:512])
    return Stop(sequence=wire.sequence_number)


def _start(wire: _Start) -> Start:
    start = wire.start
    if start is None:
        raise malformed("start without a start object")
    if not wire.stream_id:
        raise malformed("start without stream_id")
    if not start.call_control_id:
        raise malformed("start without call_control_id")
    fmt = start.media_format
    codec = DEFAULT_CODEC if fmt is None else codec_from_media_format(fmt.encoding, fmt.sample_rate, fmt.channels)
    custom = start.custom_parameters
    if isinstance(custom, list):
        parameters = {p.name: jsonwire.param(p.value) for p in custom}
    else:
        parameters = jsonwire.params(custom)
    return Start(
        stream_id=wire.stream_id,
        call_id=start.call_control_id,
        account_id=start.user_id,
        tracks=("inbound",),  # Telnyx does not announce its tracks; outbound frames are accepted as they come
        codec=codec,
        custom_parameters=parameters,
        sequence=wire.sequence_number,
        provider=PROVIDER,
    )


class _Window:
    """One track's reorder window: the next chunk due, the highest chunk seen, and the frames that
    skipped ahead (a heap of ``(chunk, arrival, frame)``)."""

    __slots__ = ("due", "held", "highest")

    def __init__(self) -> None:
        self.due = -1
        """The chunk released next; -1 before the first frame."""
        self.highest = -1
        self.held: list[tuple[int, int, Media]] = []


class _OutMedia(msgspec.Struct):
    payload: bytes


class _OutMark(msgspec.Struct):
    name: str


class _Out(msgspec.Struct, omit_defaults=True):
    event: str
    media: _OutMedia | None = None
    mark: _OutMark | None = None


_ENCODER: Final = msgspec.json.Encoder()
_CLEAR: Final = Outgoing(_ENCODER.encode(_Out("clear")), clears=True)


class TelnyxDialect:
    """Telnyx media streaming, with a per-track reorder window."""

    name: ClassVar[str] = PROVIDER
    __slots__ = ("_arrivals", "_reordering", "_windows")

    def __init__(self) -> None:
        self._windows = (_Window(), _Window())
        self._reordering = False
        """Between ``start`` and ``stop``: before, frames go straight to the session (which refuses
        them); after, nothing is held any more."""
        self._arrivals = itertools.count()

    def text(self, data: str) -> Decoded:
        event = decode(data)
        if type(event) is Media:
            chunk = event.chunk
            if chunk is None or not self._reordering:
                return event
            window = self._windows[_TRACK_INDEX[event.track]]
            due = window.due
            if chunk == due and not window.held:  # the per-frame path: in order, nothing waiting
                window.due = chunk + 1
                window.highest = chunk  # nothing held: every chunk seen so far is below ``due``
                return event
            return self._reorder(window, event, chunk)
        if type(event) is Start:
            self._reordering = True
        elif type(event) is Stop:
            self._reordering = False
            held = self._flush()
            return (*held, event) if held else event
        return event

    def _reorder(self, window: _Window, frame: Media, chunk: int) -> Decoded:
        due = window.due
        if due < 0:
            # The first frame of the track: Telnyx counts from 1, so a small chunk means earlier
            # frames are still on the way; a large one is a stream joined late.
            due = window.due = 1 if 0 < chunk <= WINDOW else chunk
        if chunk < due:
            return frame  # later than its window: as it comes (the session counts it by timestamp)
        out: list[InboundEvent] = []
        held = window.held
        if chunk < window.highest and all(c != chunk for c, _, _ in held):
            out.append(Reordered(_TRACK_NAMES[_TRACK_INDEX[frame.track]]))
        elif chunk > window.highest:
            window.highest = chunk
        heapq.heappush(held, (chunk, next(self._arrivals), frame))
        while held and (held[0][0] <= window.due or len(held) > WINDOW):
            released, _, event = heapq.heappop(held)
            out.append(event)
            if released >= window.due:
                window.due = released + 1
        return out[0] if len(out) == 1 else tuple(out)

    def _flush(self) -> tuple[InboundEvent, ...]:
        out: list[InboundEvent] = []
        for window in self._windows:
            while window.held:
                chunk, _, frame = heapq.heappop(window.held)
                window.due = max(window.due, chunk + 1)
                out.append(frame)
        return tuple(out)

    def close(self) -> Decoded:
        self._reordering = False
        return self._flush()

    def binary(self, data: bytes) -> Decoded:
        raise binary_refused()

    def encode(self, stream_id: str, message: PlayMessage) -> tuple[Outgoing, ...] | None:
        """``media`` (base64 codec bytes, RTP mode), ``mark``, ``clear``; Telnyx takes no DTMF and
        needs no stream id (docs/protocols.md section 3.4)."""
        if isinstance(message, PlayAudio):
            return (Outgoing(_ENCODER.encode(_Out("media", media=_OutMedia(message.payload)))),)
        if message.kind == "mark":
            return (Outgoing(_ENCODER.encode(_Out("mark", mark=_OutMark(message.value)))),)
        if message.kind == "clear":
            return (_CLEAR,)
        return None


# -- status callbacks (docs/protocols.md section 3.5) ----------------------------------------------

_CALL_CONTROL_EVENTS: Final = frozenset(("streaming.started", "streaming.stopped", "streaming.failed"))
_TEXML_EVENTS: Final = frozenset(("stream-started", "stream-stopped", "stream-error"))
_SIGNATURE: Final = "telnyx-signature-ed25519"


def parse_status(request: StatusRequest) -> StatusUpdate | None:
    """A Call Control webhook (JSON ``data.event_type`` ``streaming.*``) or a TeXML stream status
    callback (``StreamEvent`` fields that carry Telnyx's ``CallSidLegacy`` or its signature
    header; without either they are Twilio's or SignalWire's)."""
    body = request.json
    if body is not None:
        data = body.get("data")
        if isinstance(data, Mapping) and isinstance(data.get("event_type"), str):
            return _call_control(data)
    fields = jsonwire.fields_with(body, request.form, "StreamEvent")
    if fields is not None and ("CallSidLegacy" in fields or _SIGNATURE in request.headers):
        return _texml(fields)
    return None


def _call_control(data: Mapping[str, Any]) -> StatusUpdate:
    event = data["event_type"]
    if event not in _CALL_CONTROL_EVENTS:
        raise StatusError(f"unsupported event_type {event[:64]!r} (expected streaming.*)")
    payload = data.get("payload")
    if not isinstance(payload, Mapping):
        raise StatusError("data.payload must be an object")
    call_id = jsonwire.required(payload, "call_control_id")
    stream_id = jsonwire.first(payload, "stream_id")
    stream_params = payload.get("stream_params")
    options: Mapping[str, Any] = stream_params if isinstance(stream_params, Mapping) else {}
    url = jsonwire.first(payload, "stream_url") or jsonwire.first(options, "stream_url")
    extra = {
        key: value
        for key, value in (
            ("error", jsonwire.first(payload, "failure_reason")),
            ("track", jsonwire.first(options, "track") or jsonwire.first(payload, "stream_track")),
            ("call_session_id", jsonwire.first(payload, "call_session_id")),
            ("call_leg_id", jsonwire.first(payload, "call_leg_id")),
        )
        if value
    }
    return StatusUpdate(
        provider=PROVIDER,
        call_id=call_id,
        stream_id=stream_id,
        control_id=jsonwire.path_key(url) or stream_id or call_id,
        state=event,
        account_id="",
        provider_ts=jsonwire.first(data, "occurred_at") or None,
        extra=extra,
    )


def _texml(fields: Mapping[str, Any]) -> StatusUpdate:
    event = jsonwire.text(fields.get("StreamEvent"))
    if event not in _TEXML_EVENTS:
        raise StatusError(f"unknown StreamEvent {event[:32]!r}")
    call_id = jsonwire.required(fields, "CallSid", "CallSidLegacy")
    stream_id = jsonwire.first(fields, "StreamSid")
    name = jsonwire.first(fields, "StreamName")
    error = jsonwire.first(fields, "StreamError")
    return StatusUpdate(
        provider=PROVIDER,
        call_id=call_id,
        stream_id=stream_id,
        control_id=name or stream_id or call_id,
        state=event,
        name=name,
        account_id=jsonwire.first(fields, "AccountSid"),
        provider_ts=jsonwire.first(fields, "Timestamp") or None,
        extra={"error": error} if error else {},
    )

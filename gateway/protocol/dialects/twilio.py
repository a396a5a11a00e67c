"""The Twilio / SignalWire wire format (docs/protocols.md sections 1, 2 and 12.1).

Every documented variant decodes: ``connected`` 0.2.0 or 1.0.0 (or none), ``streamSid`` at top
level or only inside ``start``, ``customParameters`` absent or empty, ``stop`` with or without a
body, counters as strings or numbers (msgspec's lax mode), and the older ``rawEvent`` envelope.
Unknown fields are ignored; an unknown ``event`` kind is :class:`Ignored`; anything else that
does not fit raises :class:`RemoteProtocolError` with reason ``malformed`` (close 1007).

One decoder instance is built at import (msgspec's advice): ``decode`` is on the per-frame path.

:func:`parse_status` reads both families' stream status callbacks on ``/status`` (section 2.5).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Final

import msgspec

from gateway.errors import CloseCode, RemoteProtocolError
from gateway.protocol.dialects.base import (
    Decoded,
    Outgoing,
    StatusError,
    StatusRequest,
    StatusUpdate,
    binary_refused,
)
from gateway.protocol.events import Connected, Counter, Dtmf, Ignored, InboundEvent, Mark, Media, Start, Stop
from gateway.protocol.media import DEFAULT_CODEC, codec_from_media_format
from gateway.protocol.playback import PlayAudio, PlayMessage

_TRACK_NAMES: Final = {
    "inbound": "inbound",
    "outbound": "outbound",
    "inbound_track": "inbound",
    "outbound_track": "outbound",
}


class _MediaFormat(msgspec.Struct, frozen=True):
    encoding: str
    sampleRate: Annotated[int, msgspec.Meta(gt=0, le=384000)] = 8000  # noqa: N815 - wire name
    channels: Annotated[int, msgspec.Meta(ge=1, le=8)] = 1


class _StartBody(msgspec.Struct, frozen=True):
    streamSid: str | None = None  # noqa: N815
    accountSid: str = ""  # noqa: N815
    callSid: str = ""  # noqa: N815
    tracks: list[str] = []
    customParameters: dict[str, Any] | None = None  # noqa: N815
    mediaFormat: _MediaFormat | None = None  # noqa: N815


class _DtmfBody(msgspec.Struct, frozen=True):
    digit: str
    duration: Annotated[float, msgspec.Meta(ge=0)] | None = None
    track: str | None = None


class _MarkBody(msgspec.Struct, frozen=True):
    name: str


class _Base(msgspec.Struct, frozen=True, tag_field="event"):
    sequenceNumber: Counter | None = None  # noqa: N815
    streamSid: str | None = None  # noqa: N815


class _Connected(_Base, frozen=True, tag="connected"):
    protocol: str = ""
    version: str = ""


class _Start(_Base, frozen=True, tag="start"):
    start: _StartBody | None = None


class _Media(_Base, frozen=True, tag="media"):
    media: Media | None = None
    """The canonical event itself: no conversion per frame."""


class _Dtmf(_Base, frozen=True, tag="dtmf"):
    dtmf: _DtmfBody | None = None


class _Mark(_Base, frozen=True, tag="mark"):
    mark: _MarkBody | None = None


class _Stop(_Base, frozen=True, tag="stop"):
    stop: dict[str, Any] | None = None


_Wire = _Connected | _Start | _Media | _Dtmf | _Mark | _Stop


class _Probe(msgspec.Struct, frozen=True):
    """What we look at when the tagged decode fails: unknown kind, or the rawEvent envelope."""

    event: Any = None
    rawEvent: msgspec.Raw = msgspec.Raw()  # noqa: N815 - msgspec.Raw cannot sit in a union with None


_DECODER: Final = msgspec.json.Decoder(_Wire, strict=False)
_PROBE: Final = msgspec.json.Decoder(_Probe)
_KNOWN: Final = frozenset(("connected", "start", "media", "dtmf", "mark", "stop"))


def _malformed(detail: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed frame: {detail}", reason="malformed", close_code=CloseCode.INVALID_PAYLOAD)


def decode(data: str | bytes | memoryview) -> InboundEvent:
    """Decode one text frame into a canonical event."""
    try:
        try:
            wire = _DECODER.decode(data)
        except msgspec.DecodeError as exc:
            return _fallback(data, exc)
    except RecursionError:
        # msgspec raises RecursionError, not DecodeError, for deeply nested JSON in ``Any``
        # fields (customParameters, rawEvent, an unknown event's body): a peer's doing, not ours.
        raise _malformed("nested too deeply") from None
    if type(wire) is _Media and wire.media is not None:
        return wire.media  # the per-frame path: the decoded struct is the canonical event
    return _convert(wire)


def _fallback(data: str | bytes | memoryview, exc: msgspec.DecodeError) -> InboundEvent:
    try:
        probe = _PROBE.decode(data)
    except msgspec.DecodeError:
        raise _malformed(str(exc)) from None
    if probe.rawEvent:
        try:
            return _convert(_DECODER.decode(probe.rawEvent))
        except msgspec.DecodeError as inner:
            raise _malformed(f"rawEvent: {inner}") from None
    if isinstance(probe.event, str) and probe.event not in _KNOWN:
        return Ignored(kind="unknown_event")
    raise _malformed(str(exc))


def _track(name: str) -> str:
    track = _TRACK_NAMES.get(name)
    if track is None:
        raise _malformed(f"unknown track {name[:32]!r}")
    return track


def _param(value: Any) -> str:
    if isinstance(value, str):
        return value
    return msgspec.json.encode(value).decode()


def _convert(wire: _Wire) -> InboundEvent:
    if isinstance(wire, _Media):
        if wire.media is None:
            raise _malformed("media without a media object")
        return wire.media
    if isinstance(wire, _Start):
        start = wire.start
        if start is None:
            raise _malformed("start without a start object")
        stream_id = start.streamSid or wire.streamSid
        if not stream_id:
            raise _malformed("start without streamSid")
        if not start.callSid:
            raise _malformed("start without callSid")
        fmt = start.mediaFormat
        codec = DEFAULT_CODEC if fmt is None else codec_from_media_format(fmt.encoding, fmt.sampleRate, fmt.channels)
        tracks = tuple(dict.fromkeys(_track(t) for t in start.tracks)) or ("inbound",)
        params = {str(k): _param(v) for k, v in (start.customParameters or {}).items()}
        return Start(
            stream_id=stream_id,
            call_id=start.callSid,
            account_id=start.accountSid,
            tracks=tracks,
            codec=codec,
            custom_parameters=params,
            sequence=wire.sequenceNumber,
            provider="twilio" if stream_id.startswith("MZ") else "signalwire",
        )
    if isinstance(wire, _Connected):
        return Connected(version=wire.version, protocol=wire.protocol)
    if isinstance(wire, _Dtmf):
        if wire.dtmf is None:
            raise _malformed("dtmf without a dtmf object")
        return Dtmf(digit=wire.dtmf.digit[:8], duration_ms=wire.dtmf.duration, sequence=wire.sequenceNumber)
    if isinstance(wire, _Mark):
        if wire.mark is None:
            raise _malformed("mark without a mark object")
        return Mark(name=wire.mark.name, sequence=wire.sequenceNumber)
    return Stop(sequence=wire.sequenceNumber)


class _OutMedia(msgspec.Struct):
    payload: bytes


class _OutMark(msgspec.Struct):
    name: str


class _OutDtmf(msgspec.Struct):
    digit: str


class _Out(msgspec.Struct, omit_defaults=True):
    event: str
    streamSid: str  # noqa: N815 - wire name
    media: _OutMedia | None = None
    mark: _OutMark | None = None
    dtmf: _OutDtmf | None = None


_ENCODER: Final = msgspec.json.Encoder()


class TwilioDialect:
    """Twilio Media Streams and SignalWire: one wire format. Unless ``?provider=`` said which, the
    two are told apart by the ``connected`` version (1.0.0 at Twilio, 0.2.0 at SignalWire) and
    Twilio's ``MZ`` stream ids."""

    name: ClassVar[str] = "signalwire"
    __slots__ = ("_provider",)

    def __init__(self, provider: str | None = None) -> None:
        self._provider = provider

    def text(self, data: str) -> Decoded:
        event = decode(data)
        if type(event) is Media:
            return event
        if type(event) is Connected and self._provider is None and event.version == "1.0.0":
            self._provider = "twilio"
        elif type(event) is Start:
            provider = self._provider or event.provider
            self._provider = provider
            if provider != event.provider:
                return dataclasses.replace(event, provider=provider)
        return event

    def close(self) -> Decoded:
        return ()

    def binary(self, data: bytes) -> Decoded:
        raise binary_refused()

    def encode(self, stream_id: str, message: PlayMessage) -> tuple[Outgoing, ...] | None:
        """``media`` (base64), ``mark``, ``clear``; ``dtmf`` only at SignalWire (docs/protocols.md
        sections 1.4 and 2.7: Twilio answers an unknown event with a warning, never plays it)."""
        if isinstance(message, PlayAudio):
            out = _Out("media", stream_id, media=_OutMedia(message.payload))
        elif message.kind == "mark":
            out = _Out("mark", stream_id, mark=_OutMark(message.value))
        elif message.kind == "dtmf":
            if self._provider == "twilio":
                return None
            out = _Out("dtmf", stream_id, dtmf=_OutDtmf(message.value))
        else:
            out = _Out("clear", stream_id)
        return (Outgoing(_ENCODER.encode(out)),)


# -- status callbacks (``/status``) -----------------------------------------------------------

_SWML_STATES: Final = frozenset(("streaming", "finished"))
_CXML_EVENTS: Final = frozenset(("stream-started", "stream-stopped", "stream-error"))
_OTHER_SIGNATURES: Final = ("telnyx-signature-ed25519", "x-plivo-signature-v3")
"""Signature headers of providers whose callbacks look like these (TeXML posts cXML's fields)."""


def parse_status(request: StatusRequest) -> StatusUpdate | None:
    """A SignalWire SWML / RELAY ``calling.call.stream`` callback (JSON; or, since
    ``status_url_method`` may be GET, its fields as query parameters with ``params.*`` names), or a
    Twilio / SignalWire cXML ``StreamEvent`` form. SWML is SignalWire's; a form is SignalWire's when
    SignalWire signed it (``X-SignalWire-Signature``), else Twilio's when its ids are Twilio's
    (``MZ`` stream, ``AC`` account), else SignalWire's. None for another provider's callback
    (another provider's signature header, no ``event_type`` or ``StreamEvent``)."""
    if any(name in request.headers for name in _OTHER_SIGNATURES):
        return None
    if request.json is not None:
        return _swml(request.json) if "event_type" in request.json else None
    form = request.form
    if "StreamEvent" in form:
        return _cxml(form, request.headers)
    if "event_type" in form:
        params = {k.removeprefix("params."): v for k, v in form.items() if k.startswith("params.")}
        return _swml({**form, "params": params})
    return None


def _swml(data: Mapping[str, Any]) -> StatusUpdate:
    if data.get("event_type") != "calling.call.stream":
        raise StatusError(f"unsupported event_type {str(data.get('event_type'))[:64]!r}")
    params = data.get("params")
    if not isinstance(params, Mapping):
        raise StatusError("params must be an object")
    missing = [k for k in ("call_id", "control_id", "state") if not isinstance(params.get(k), str) or not params[k]]
    if missing:
        raise StatusError(f"params missing {', '.join(missing)}")
    if params["state"] not in _SWML_STATES:
        raise StatusError(f"unknown state {str(params['state'])[:32]!r}")
    timestamp = data.get("timestamp")
    return StatusUpdate(
        provider="signalwire",
        call_id=params["call_id"],
        stream_id="",
        control_id=params["control_id"],
        state=params["state"],
        name=str(params.get("name") or ""),
        account_id=str(data.get("project_id") or ""),
        provider_ts=timestamp if isinstance(timestamp, str | int | float) and not isinstance(timestamp, bool) else None,
        extra={k: str(params[k]) for k in ("node_id", "segment_id", "tag") if params.get(k)},
    )


def _cxml(fields: Mapping[str, str], headers: Mapping[str, str]) -> StatusUpdate:
    event = fields.get("StreamEvent", "")
    if event not in _CXML_EVENTS:
        raise StatusError(f"unknown StreamEvent {event[:32]!r}")
    if not fields.get("CallSid"):
        raise StatusError("CallSid missing")
    stream_sid = fields.get("StreamSid", "")
    account = fields.get("AccountSid", "")
    twilio_ids = stream_sid.startswith("MZ") or account.startswith("AC")
    extra = {"error": fields.get("StreamError", ""), "track": fields.get("StreamTrack", "")}
    return StatusUpdate(
        provider="twilio" if twilio_ids and "x-signalwire-signature" not in headers else "signalwire",
        call_id=fields["CallSid"],
        stream_id=stream_sid,
        control_id=fields.get("StreamName") or stream_sid,
        state=event,
        name=fields.get("StreamName", ""),
        account_id=account,
        provider_ts=fields.get("Timestamp"),
        extra={k: v for k, v in extra.items() if v},
    )

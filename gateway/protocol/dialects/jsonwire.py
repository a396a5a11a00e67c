"""What the JSON provider dialects share (Telnyx, Plivo, Bandwidth, Exotel), off the per-frame path.

The fallback of a failed tagged decode (a well-formed message of an unknown kind is
:class:`Ignored`; anything else is malformed), custom-parameter values as strings, the provider
strings that need parsing (Plivo's ``k=v,k2=v2``, content types with ``;rate=``, the route key in
a stream URL), track names, and the helpers of the status-callback parsers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import msgspec

from gateway.protocol.dialects.base import StatusError, malformed
from gateway.protocol.events import Ignored
from gateway.protocol.media import Codec

_ANY: Final = msgspec.json.Decoder()
_TRACKS: Final = {
    "inbound": ("inbound",),
    "outbound": ("outbound",),
    "inbound_track": ("inbound",),
    "outbound_track": ("outbound",),
    "both": ("inbound", "outbound"),
    "both_tracks": ("inbound", "outbound"),
}
_SILENCE: Final = {"PCMU": b"\xff", "PCMA": b"\xd5"}
"""One byte of silence per codec (L16 and anything else: zero)."""


def fallback(data: str | bytes, exc: msgspec.DecodeError, tag_field: str, known: frozenset[str]) -> Ignored:
    """A frame the tagged decoder refused: :class:`Ignored` when it is a JSON object whose
    ``tag_field`` names a kind the dialect does not know; otherwise malformed (close 1007)."""
    try:
        message = _ANY.decode(data)
    except (msgspec.DecodeError, RecursionError):
        raise malformed(str(exc)) from None
    kind = message.get(tag_field) if isinstance(message, dict) else None
    if isinstance(kind, str) and kind not in known:
        return Ignored(kind="unknown_event")
    raise malformed(str(exc))


def param(value: Any) -> str:
    """A custom-parameter value as the string consumers get (JSON for anything but a string)."""
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def params(values: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): param(v) for k, v in (values or {}).items()}


def pairs(text: str) -> dict[str, str]:
    """``k=v,k2=v2`` (Plivo's ``extra_headers``) as a dict; an item without ``=`` is a key with an
    empty value, empty items are skipped."""
    out: dict[str, str] = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        if key.strip():
            out[key.strip()] = value.strip()
    return out


def content_type(value: str) -> tuple[str, int | None]:
    """``audio/x-l16;rate=16000`` -> (``audio/x-l16``, 16000); the rate is None when not given."""
    base, *options = value.split(";")
    for option in options:
        name, _, number = option.partition("=")
        if name.strip().lower() == "rate" and number.strip().isdigit():
            return base.strip(), int(number.strip())
    return base.strip(), None


def tracks(names: Iterable[str]) -> tuple[str, ...]:
    """Announced track names, normalised and deduplicated (``inbound`` when none are named)."""
    out: dict[str, None] = {}
    for name in names:
        normal = _TRACKS.get(name)
        if normal is None:
            raise malformed(f"unknown track {name[:32]!r}")
        out.update(dict.fromkeys(normal))
    return tuple(out) or ("inbound",)


def silence(codec: Codec) -> bytes:
    """One byte of digital silence in ``codec`` (what a back-channel pads a short chunk with)."""
    return _SILENCE.get(codec.name, b"\x00")


# -- status callbacks ------------------------------------------------------------------------------


def path_key(url: str) -> str:
    """The route key of a stream URL, ``wss://host/stream/<key>``: the same ``control_id`` the
    stream's own session resolves its route with; empty when the URL has none."""
    try:
        path = urlsplit(url).path
    except ValueError:
        return ""
    _, found, key = path.rpartition("/stream/")
    if not found or not key or "/" in key:
        return ""
    return unquote(key)


def text(value: Any) -> str:
    """A callback field as a string (numbers are written out, anything else is empty)."""
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return ""


def first(fields: Mapping[str, Any], *names: str) -> str:
    """The first of ``names`` present and non-empty in ``fields``, as a string."""
    for name in names:
        value = text(fields.get(name))
        if value:
            return value
    return ""


def required(fields: Mapping[str, Any], *names: str) -> str:
    value = first(fields, *names)
    if not value:
        raise StatusError(f"{names[0]} missing")
    return value


def fields_with(request_json: Mapping[str, Any] | None, form: Mapping[str, str], key: str) -> Mapping[str, Any] | None:
    """The callback's fields when ``key`` is among them: the form (query and url-encoded body),
    else the JSON object; None when neither has it."""
    if key in form:
        return form
    if request_json is not None and key in request_json:
        return request_json
    return None

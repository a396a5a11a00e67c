"""The canonical inbound event model every provider dialect decodes into.

Frozen, typed, and provider-neutral (docs/protocols.md section 10): the session state machine only
ever sees these. Track names are already normalised to ``inbound``/``outbound``, counters to
integers, the audio payload to raw bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Final, Literal

import msgspec

from gateway.protocol.media import Codec

TrackName = Literal["inbound", "outbound", "inbound_track", "outbound_track"]
"""The wire's track spellings; msgspec refuses anything else while decoding (no cost per frame)."""
Counter = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
"""A provider counter or media timestamp: lax-decoded from a string or a number, never negative."""


@dataclass(frozen=True, slots=True)
class Connected:
    """The optional first message (``connected``); ``version`` is 0.2.0 (SignalWire) or 1.0.0."""

    version: str = ""
    protocol: str = ""


@dataclass(frozen=True, slots=True)
class Start:
    """The stream's metadata: ids, tracks, codec and custom parameters."""

    stream_id: str
    call_id: str
    account_id: str
    tracks: tuple[str, ...]
    codec: Codec
    custom_parameters: dict[str, str] = field(default_factory=dict)
    sequence: int | None = None
    provider: str = ""
    """The provider name the dialect recognised (``signalwire``, ``twilio``, ``telnyx``...)."""


class Media(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """One audio frame of one track.

    A msgspec struct rather than a dataclass so that a JSON dialect whose media object has these
    field names (Twilio, SignalWire, Telnyx) decodes straight into it, base64 to bytes included,
    with no conversion on the per-frame path. ``track`` is the wire's spelling (``inbound``,
    ``outbound`` or their ``_track`` forms); the session maps it once per frame.
    """

    payload: bytes
    track: TrackName = "inbound"
    timestamp: Counter | None = None
    """Provider media time in ms since stream start (None: the session counts it from the bytes)."""
    chunk: Counter | None = None


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str
    duration_ms: float | None = None
    sequence: int | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    """Echo of a mark the consumer sent on a bidirectional stream."""

    name: str
    sequence: int | None = None


@dataclass(frozen=True, slots=True)
class Stop:
    """The provider ended the stream (the body, if any, carries nothing we need)."""

    sequence: int | None = None


@dataclass(frozen=True, slots=True)
class Reordered:
    """A frame of ``track`` arrived out of order and the dialect put it back in place (Telnyx):
    published in order, but counted, never hidden."""

    track: str


@dataclass(frozen=True, slots=True)
class ProviderError:
    """The provider reports a problem and keeps the stream open (Telnyx ``error``: mostly about
    what the back-channel sent); consumers get an ``error`` event with reason ``provider_error``."""

    code: int | None
    title: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed message we do not act on (an unknown ``event`` kind); counted, not fatal."""

    kind: str


InboundEvent = Connected | Start | Media | Dtmf | Mark | Stop | Reordered | ProviderError | Ignored

TRACKS: Final = ("inbound", "outbound")

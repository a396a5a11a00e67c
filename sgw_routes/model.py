"""The route model: one compiled route, the routing table and how a stream finds its route.

A :class:`Route` is the compiled form of one StreamRoute (or of the built-in default route). The
:class:`RoutingTable` holds routes already sorted by precedence, so :meth:`RoutingTable.match` is
a first-match scan. Tables are immutable and versioned: the gateway swaps whole tables and a live
stream keeps the route it started with.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Mapping
from functools import cached_property
from typing import Final

import msgspec

from sgw_routes.subjects import DEFAULT_AUDIO_SUBJECT, DEFAULT_EVENTS_SUBJECT, DEFAULT_PLAYBACK_SUBJECT

TRACKS: Final = ("inbound", "outbound")
PROVIDERS: Final = ("signalwire", "twilio", "telnyx", "vonage", "plivo", "exotel", "jambonz", "bandwidth")
"""Every provider the gateway speaks (``spec.match.providers``, ``started.provider``, metric labels)."""
DEFAULT_ROUTE_NAME: Final = "default"
NO_BEARER_TOKEN: Final = "none: this route takes other credentials"
"""``token_sha256`` of a route that requires credentials but no bearer token. No token hashes to
it, so a gateway that predates the other kinds (and reads only ``token_sha256``) refuses the
route's streams instead of serving them open."""


def hash_token(token: str) -> str:
    """The form a bearer token is stored in: hex SHA-256. The table never holds a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def specificity(pattern: str) -> int:
    """Literal (non-wildcard) characters in a glob: more literal means more specific."""
    count = 0
    in_class = False
    for ch in pattern:
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch not in "*?":
            count += 1
    return count


TRANSFORM_ENCODINGS: Final = ("L16",)
"""What ``spec.transform`` can produce: L16 is signed 16-bit little-endian linear PCM, mono."""
TRANSFORM_RATES: Final = (8000, 16000, 24000, 48000)


class Transform(msgspec.Struct, frozen=True, kw_only=True):
    """What a route publishes instead of the provider's audio (``spec.transform``)."""

    encoding: str = "L16"
    sample_rate: int = 16000

    @property
    def label(self) -> str:
        """The ``Sgw-Codec`` spelling, e.g. ``L16/16000``."""
        return f"{self.encoding}/{self.sample_rate}"


class Copy(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One more subject set a route publishes every frame on (``spec.target.copies``)."""

    subject: str
    transform: Transform | None = None
    """``None``: the provider's audio, untouched."""


class Route(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, dict=True):
    """One compiled route. ``name`` is ``namespace/name`` for cluster routes, the bare name in file mode."""

    name: str
    control_id: str = "*"
    """Glob over the stream's route key (``control_id``)."""
    tracks: tuple[str, ...] = ()
    """If set, a stream matches only when every one of its tracks is listed."""
    custom_parameters: dict[str, str] = {}
    """Exact key/value pairs that must all be present in ``start.customParameters``."""
    providers: tuple[str, ...] = ()
    """If set, a stream matches only when its provider is listed."""
    priority: int = 0
    created: str = ""
    """Creation time (RFC 3339) for the "oldest wins" tie-break."""
    subject: str = DEFAULT_AUDIO_SUBJECT
    events_subject: str = DEFAULT_EVENTS_SUBJECT
    jetstream_stream: str | None = None
    """Publish through JetStream (acknowledged) into this stream instead of core NATS."""
    token_sha256: str | None = None
    """Hex SHA-256 of the bearer token the route accepts (or :data:`NO_BEARER_TOKEN`)."""
    basic_sha256: str | None = None
    """Hex SHA-256 of the ``username:password`` the route accepts (HTTP Basic)."""
    twilio_key: str | None = None
    """HMAC-SHA1 key schedule of the Twilio auth token whose ``X-Twilio-Signature`` the route
    accepts (``sgw_routes.credentials.twilio_key``: it verifies signatures, it is not the token)."""
    playback_subject: str | None = None
    transform: Transform | None = None
    """Publish the audio on ``subject`` transformed to this format (``None``: as the provider sends it)."""
    copies: tuple[Copy, ...] = ()
    """Further subject sets every frame is published on, each transformed or not."""
    label: str = ""
    """The metric label for this route (bounded: the route's name)."""

    @cached_property
    def _glob(self) -> re.Pattern[str]:
        return re.compile(fnmatch.translate(self.control_id))

    @property
    def match_key(self) -> tuple[str, tuple[str, ...], tuple[tuple[str, str], ...], tuple[str, ...]]:
        """Two routes with the same match key conflict: they match exactly the same streams."""
        return (
            self.control_id,
            tuple(sorted(self.tracks)),
            tuple(sorted(self.custom_parameters.items())),
            tuple(sorted(self.providers)),
        )

    @property
    def metric_label(self) -> str:
        return self.label or self.name

    def matches_key(self, control_id: str) -> bool:
        return self._glob.match(control_id) is not None

    def matches(
        self, control_id: str, tracks: tuple[str, ...], custom_parameters: Mapping[str, str], provider: str = ""
    ) -> bool:
        if not self.matches_key(control_id):
            return False
        if self.providers and provider not in self.providers:
            return False
        if self.tracks and not set(tracks) <= set(self.tracks):
            return False
        return all(custom_parameters.get(k) == v for k, v in self.custom_parameters.items())

    @property
    def requires_auth(self) -> bool:
        """Whether streams must present a credential; with several kinds, any one of them will do."""
        return self.token_sha256 is not None or self.basic_sha256 is not None or self.twilio_key is not None

    @property
    def auth_kinds(self) -> tuple[str, ...]:
        """The credential kinds this route accepts (``bearer``, ``basic``, ``twilio_signature``)."""
        kinds = []
        if self.token_sha256 is not None and self.token_sha256 != NO_BEARER_TOKEN:
            kinds.append("bearer")
        if self.basic_sha256 is not None:
            kinds.append("basic")
        if self.twilio_key is not None:
            kinds.append("twilio_signature")
        return tuple(kinds)


def precedence_key(route: Route) -> tuple[int, int, str, str]:
    """Sort key: most specific pattern, then higher priority, then oldest, then name."""
    return (-specificity(route.control_id), -route.priority, route.created or "~", route.name)


class RoutingTable(msgspec.Struct, frozen=True, kw_only=True):
    """Routes in precedence order plus an optional default route, with a version for logs/metrics."""

    version: int = 0
    routes: tuple[Route, ...] = ()
    default: Route | None = None

    def match(
        self, control_id: str, tracks: tuple[str, ...], custom_parameters: Mapping[str, str], provider: str = ""
    ) -> Route | None:
        for route in self.routes:
            if route.matches(control_id, tracks, custom_parameters, provider):
                return route
        return self.default

    def candidates(self, control_id: str) -> tuple[Route, ...]:
        """Routes a stream with this key could end up on (filters on tracks/params are unknown yet)."""
        found = tuple(r for r in self.routes if r.matches_key(control_id))
        return found + ((self.default,) if self.default is not None else ())


def default_route() -> Route:
    """The quick start's catch-all: everything to ``audio.{call_id}.{track}``, no auth, and a
    back-channel per stream on ``play.{call_id}.{stream_id}`` (named in each ``started`` event)."""
    return Route(
        name=DEFAULT_ROUTE_NAME,
        control_id="*",
        priority=-(2**31),
        label=DEFAULT_ROUTE_NAME,
        playback_subject=DEFAULT_PLAYBACK_SUBJECT,
    )


_TABLE_DECODER: Final = msgspec.json.Decoder(RoutingTable)


def encode_table(table: RoutingTable) -> bytes:
    """The wire form of a table (the value stored in the NATS KV bucket)."""
    return msgspec.json.encode(table)


def decode_table(data: bytes) -> RoutingTable:
    return _TABLE_DECODER.decode(data)

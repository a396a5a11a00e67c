"""The per-stream state machine: canonical events in, actions out (sans-IO).

Rule 1: every rule about message order lives in the transition table below, not in the shell.
Rule 2: no clocks, no awaits, no logging, no metrics. Time is passed in; the shell measures.

The session resolves the stream's route once, at ``start``, from the table current at that moment
(a stream keeps its route for life), checks the stream's credentials against it (``auth``), and renders the subjects
and constant headers once, so a media frame costs one dict lookup (its track) and a few counter
updates in :meth:`StreamSession.media`, the per-frame path, which allocates nothing. Sequence
anomalies are detected per track from ``media.timestamp`` (the media clock, docs/pitfalls.md item
18): a jump of more than one frame is a gap, a timestamp seen before is a duplicate, an older
unseen one is a reordered frame. They are counted, never hidden: every frame is published as
received. ``Sgw-Ts`` is the provider's timestamp, or, where a provider sends none, the media time
counted from the bytes received on that track.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final

from gateway.errors import CloseCode, GatewayError, RemoteProtocolError, RouteNotFound, Unauthorized
from gateway.protocol.actions import Action, AudioCopy, Close, EventOut, FrameOut, Started, StreamInfo
from gateway.protocol.auth import NO_CREDENTIALS, Credentials, accepts
from gateway.protocol.events import (
    Connected,
    Dtmf,
    Ignored,
    InboundEvent,
    Mark,
    Media,
    ProviderError,
    Reordered,
    Start,
    Stop,
)
from gateway.protocol.media import Codec
from gateway.protocol.transform import published
from sgw_routes.model import Route, RoutingTable
from sgw_routes.subjects import render

_MISSING_WINDOW: Final = 64
_TRACK_NAMES: Final = ("inbound", "outbound")
_TRACK_INDEX: Final = {"inbound": 0, "outbound": 1, "inbound_track": 0, "outbound_track": 1}


class State(Enum):
    AWAIT_START = "await_start"
    STREAMING = "streaming"
    CLOSED = "closed"


# What each event does in each state. "start"/"media"/... name handler methods; a string starting
# with "!" is a protocol violation with that metric reason. Anything not listed is ignored.
TRANSITIONS: Final[dict[State, dict[type, str]]] = {
    State.AWAIT_START: {
        Connected: "connected",
        Start: "start",
        Media: "!media_before_start",
        Dtmf: "!event_before_start",
        Mark: "!event_before_start",
        Stop: "stop_before_start",
        Reordered: "!media_before_start",
        ProviderError: "ignored",  # no events subject before start: counted as ignored
        Ignored: "ignored",
    },
    State.STREAMING: {
        Connected: "!connected_after_start",
        Start: "!duplicate_start",
        Media: "media",
        Dtmf: "dtmf",
        Mark: "mark",
        Stop: "stop",
        Reordered: "reordered",
        ProviderError: "provider_error",
        Ignored: "ignored",
    },
    State.CLOSED: {},
}


@dataclass(slots=True)
class TrackStats:
    """Per-track counters and the gateway's contiguous ``Sgw-Seq`` (read by metrics at scrape)."""

    index: int
    """0 for ``inbound``, 1 for ``outbound``: the shell's outbox and subjects are indexed by it."""
    seq: int = 0
    """``Sgw-Seq`` of the last frame, which is also the number of frames received."""
    ts: int = 0
    """``Sgw-Ts`` of the last frame."""
    bytes: int = 0
    gaps: int = 0
    duplicates: int = 0
    reordered: int = 0
    highest_ts: int = -1
    missing: deque[int] | None = None
    """Timestamps skipped by recent gaps: a late frame that fills one is reordered, any other
    late frame is a duplicate. Remembering the holes instead of every frame costs nothing per
    in-order frame (and it exists only once there was a hole: memory per idle stream)."""

    @property
    def frames(self) -> int:
        return self.seq

    def gap(self, high: int, ts: int, frame_ms: float) -> None:
        """``ts`` jumped past ``high`` by more than one frame: count and remember the holes. The
        first frame (``high`` -1) may start late (Twilio's first timestamp is 20): its holes are
        remembered, so an earlier frame arriving after it is reordered, but they are no gap."""
        first = high < 0
        if first:
            high = round(ts - frame_ms * (ts // frame_ms + 1))
        missing = round((ts - high) / frame_ms) - 1
        if missing > 0:
            if not first:
                self.gaps += missing
            holes = self.missing
            if holes is None:
                holes = self.missing = deque(maxlen=_MISSING_WINDOW)
            for n in range(max(1, missing + 1 - _MISSING_WINDOW), missing + 1):
                holes.append(round(high + n * frame_ms))

    def late(self, ts: int) -> None:
        """A timestamp at or below the highest seen: it fills a hole, or it is a duplicate."""
        if self.missing is not None and ts in self.missing:
            self.missing.remove(ts)
            self.reordered += 1
        else:
            self.duplicates += 1


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Per-process constants the session needs (from settings), resolved once."""

    max_payload_bytes: int = 16384
    secret_parameters: tuple[str, ...] = ()


class StreamSession:
    """One provider stream from upgrade to close."""

    # Slots: the per-frame path reads several attributes, and slot reads skip a dict lookup each.
    __slots__ = (
        "_bytes_per_ms",
        "_config",
        "_connected_version",
        "_events_subject",
        "_max_payload",
        "_ms_per_byte",
        "_path_key",
        "_stats",
        "_tables",
        "_credentials",
        "_events",
        "_traceparent",
        "_traceparent_factory",
        "ignored",
        "info",
        "state",
        "stop_reason",
        "streaming",
    )

    def __init__(
        self,
        *,
        tables: Callable[[], RoutingTable],
        config: SessionConfig,
        path_key: str | None = None,
        credentials: Credentials = NO_CREDENTIALS,
        traceparent: Callable[[StreamInfo], str] | None = None,
    ) -> None:
        self.state = State.AWAIT_START
        self.info: StreamInfo | None = None
        self.stop_reason: str | None = None
        self._tables = tables
        self._config = config
        self._path_key = path_key
        self._credentials = credentials
        self._traceparent_factory = traceparent
        self._traceparent = ""
        self._connected_version: str | None = None
        self._stats = (TrackStats(0), TrackStats(1))
        self._events_subject = ""
        self._events = 0
        self._ms_per_byte = 0.0
        self._bytes_per_ms = 0.0
        self._max_payload = config.max_payload_bytes
        self.streaming = False
        """True between an accepted ``start`` and the end: the shell's cue for :meth:`media`."""
        self.ignored = 0

    def __repr__(self) -> str:  # never show a credential
        return f"StreamSession(state={self.state.value}, stream={self.info.stream_id if self.info else None})"

    @property
    def traceparent(self) -> str:
        return self._traceparent

    @property
    def tracks(self) -> dict[str, TrackStats]:
        """The stream's tracks by name (both, once started; only those with frames or announced
        appear in ``stopped``)."""
        return {"inbound": self._stats[0], "outbound": self._stats[1]}

    @property
    def track_pair(self) -> tuple[TrackStats, TrackStats]:
        """The two tracks by index (what the metrics read, without building a dict)."""
        return self._stats

    def media(self, event: Media) -> TrackStats:
        """The per-frame path (only while :attr:`streaming`): count one frame, return its track.

        The shell publishes ``payload`` as frame ``stats.seq`` at ``stats.ts`` of track
        ``stats.index``. Raises :class:`RemoteProtocolError` for an unknown track or a payload
        over the limit.
        """
        index = _TRACK_INDEX.get(event.track)
        if index is None:
            raise RemoteProtocolError(
                f"malformed frame: unknown track {event.track[:32]!r}",
                reason="malformed",
                close_code=CloseCode.INVALID_PAYLOAD,
            )
        stats = self._stats[index]
        size = len(event.payload)
        if size > self._max_payload:
            raise RemoteProtocolError(
                f"media payload of {size} bytes exceeds {self._max_payload}", reason="payload_too_big"
            )
        stats.seq += 1
        before = stats.bytes
        stats.bytes = before + size
        ts = event.timestamp
        if ts is None:
            ts = int(before * self._ms_per_byte)
        high = stats.highest_ts
        if ts > high:
            # A jump of at least one and a half frames is a gap (frame length from the payload size).
            if high >= 0:
                if (ts - high) * self._bytes_per_ms >= 1.5 * size > 0:
                    stats.gap(high, ts, size * self._ms_per_byte)
            elif ts > 0 and size:
                stats.gap(high, ts, size * self._ms_per_byte)  # the first frame starts late
            stats.highest_ts = ts
        else:
            stats.late(ts)
        stats.ts = ts
        return stats

    def receive(self, event: InboundEvent, now: float) -> list[Action]:
        """Feed one event. Raises :class:`GatewayError` on a violation; call :meth:`fail` then."""
        handler = TRANSITIONS[self.state].get(type(event))
        if handler is None:
            return []
        if handler.startswith("!"):
            raise RemoteProtocolError(f"protocol violation: {handler[1:].replace('_', ' ')}", reason=handler[1:])
        # Handlers are looked up by name (``_on_<name>``) rather than kept in a dict of bound methods,
        # which would make every session a reference cycle that only the cyclic GC frees.
        method: Callable[[Any, float], list[Action]] = getattr(self, f"_on_{handler}")
        return method(event, now)

    # -- handlers -----------------------------------------------------------------------------

    def _on_connected(self, event: Connected, now: float) -> list[Action]:
        if self._connected_version is not None:
            raise RemoteProtocolError("protocol violation: duplicate connected", reason="duplicate_connected")
        self._connected_version = event.version
        return []

    def _on_ignored(self, event: Ignored, now: float) -> list[Action]:
        self.ignored += 1
        return []

    def _on_stop_before_start(self, event: Stop, now: float) -> list[Action]:
        self.state = State.CLOSED
        self.stop_reason = "stop"
        return [Close(1000, "stopped before start")]

    def _on_start(self, event: Start, now: float) -> list[Action]:
        control_id = self._path_key or event.custom_parameters.get("control_id") or event.stream_id
        provider = event.provider or "signalwire"
        route = self._tables().match(control_id, event.tracks, event.custom_parameters, provider)
        if route is None:
            raise RouteNotFound(f"no route for control_id {control_id[:64]!r}")
        if not accepts(route, self._credentials):
            raise Unauthorized("unauthorized")  # which kind failed is the shell's metric, not the peer's business
        self._credentials = NO_CREDENTIALS  # not needed any more: keep nothing secret longer than necessary
        values = _subject_values(event, control_id, route)
        info = StreamInfo(
            call_id=event.call_id,
            stream_id=event.stream_id,
            account_id=event.account_id,
            control_id=control_id,
            route=route,
            provider=provider,
            tracks=event.tracks,
            codec=event.codec,
            custom_parameters=self._mask(event.custom_parameters),
        )
        if self._traceparent_factory is not None:
            self._traceparent = self._traceparent_factory(info)
            self._traceparent_factory = None  # used once; dropping it breaks the cycle with the shell
        info = self._prepare(info, values, route, event.codec)
        self.info = info
        self.state = State.STREAMING
        self.streaming = True
        extra: dict[str, Any] = {"playback_subject": info.playback_subject} if info.playback_subject else {}
        started = self._event(
            "started",
            now,
            route=route.metric_label,
            account_id=info.account_id,
            provider=info.provider,
            tracks=list(info.tracks),
            codec=event.codec.label,
            sample_rate=event.codec.sample_rate,
            channels=event.codec.channels,
            custom_parameters=info.custom_parameters,
            **extra,
            **_published_fields(info, route),
        )
        return [Started(info), started]

    def _prepare(self, info: StreamInfo, values: dict[str, str], route: Route, codec: Codec) -> StreamInfo:
        """Render everything a frame or event needs, once."""
        self._events_subject = render(route.events_subject, values)
        main = published(codec, route.transform)[0]
        headers = {"Sgw-Codec": (main or codec).label, "Sgw-Stream-Id": info.stream_id}
        if self._traceparent:
            headers["traceparent"] = self._traceparent
        self._bytes_per_ms = codec.bytes_per_ms
        self._ms_per_byte = 1.0 / codec.bytes_per_ms if codec.bytes_per_ms else 0.0
        copies: list[AudioCopy] = []
        # Copies are core NATS only (the manifest refuses them with JetStream): none rather than
        # copies published some other way than the route asked.
        for copy in () if route.jetstream_stream else route.copies:
            carries = published(codec, copy.transform)[0]
            copies.append(
                AudioCopy(
                    subjects=_track_subjects(copy.subject, values),
                    headers={**headers, "Sgw-Codec": (carries or codec).label},
                    codec=carries,
                )
            )
        return dataclasses.replace(
            info,
            playback_subject=render(route.playback_subject, values) if route.playback_subject else None,
            audio_subjects=_track_subjects(route.subject, values),
            events_subject=self._events_subject,
            frame_headers=headers,
            published_codec=main,
            copies=tuple(copies),
        )

    def _on_media(self, event: Media, now: float) -> list[Action]:
        stats = self.media(event)
        return [FrameOut(_TRACK_NAMES[stats.index], stats.seq, stats.ts, event.payload)]

    def _on_reordered(self, event: Reordered, now: float) -> list[Action]:
        self._stats[_TRACK_INDEX[event.track]].reordered += 1
        return []

    def _on_provider_error(self, event: ProviderError, now: float) -> list[Action]:
        # Not a close: no ``code`` (that is the close code in the other ``error`` events).
        message = ": ".join(part for part in (event.title, event.detail) if part)
        return [
            self._event(
                "error",
                now,
                reason="provider_error",
                message=message,
                provider_code=event.code,
                title=event.title,
                detail=event.detail,
            )
        ]

    def _on_dtmf(self, event: Dtmf, now: float) -> list[Action]:
        body: dict[str, Any] = {"digit": event.digit}
        if event.duration_ms is not None:
            body["duration"] = event.duration_ms
        return [self._event("dtmf", now, **body)]

    def _on_mark(self, event: Mark, now: float) -> list[Action]:
        return [self._event("mark", now, name=event.name)]

    def _on_stop(self, event: Stop, now: float) -> list[Action]:
        return self.finish("stop", now, code=1000)

    # -- ending -----------------------------------------------------------------------------

    def finish(self, reason: str, now: float, *, code: int | None = None, close_reason: str = "") -> list[Action]:
        """End the stream (``stop``, socket closed, timeout, shutdown): ``stopped`` is the last event.

        Idempotent: a second call returns nothing, so ``stop`` followed by a close is one end.
        """
        if self.state is State.CLOSED:
            return []
        was_streaming = self.state is State.STREAMING
        self.state = State.CLOSED
        self.streaming = False
        self.stop_reason = reason
        actions: list[Action] = []
        if was_streaming:
            actions.append(self._stopped(reason, now))
        if code is not None:
            actions.append(Close(code, close_reason or reason))
        return actions

    def fail(self, error: GatewayError, now: float) -> list[Action]:
        """A violation ends the stream: ``error`` event (if started), ``stopped``, then close."""
        if self.state is State.CLOSED:
            return []
        actions: list[Action] = []
        if self.state is State.STREAMING:
            actions.append(
                self._event(
                    "error",
                    now,
                    reason=error.reason,
                    code=int(error.close_code),
                    message=error.message,
                )
            )
        actions.extend(self.finish("error", now, code=int(error.close_code), close_reason=error.close_message))
        return actions

    def _stopped(self, reason: str, now: float) -> EventOut:
        tracks = {
            name: {
                "frames": t.frames,
                "bytes": t.bytes,
                "gaps": t.gaps,
                "duplicates": t.duplicates,
                "reordered": t.reordered,
                "dropped": 0,
            }
            for name, t in self.tracks.items()
            if t.frames or (self.info is not None and name in self.info.tracks)
        }
        return self._event("stopped", now, reason=reason, tracks=tracks)

    def _event(self, kind: str, now: float, **fields: Any) -> EventOut:
        info = self.info
        assert info is not None  # events exist only after start
        body: dict[str, Any] = {
            "type": kind,
            "call_id": info.call_id,
            "stream_id": info.stream_id,
            "control_id": info.control_id,
            "ts": now,
            "traceparent": self._traceparent,
        }
        body.update(fields)
        self._events += 1
        # The stream's event counter: a consumer skips a copy sent again after a NATS failover.
        headers = {"Sgw-Stream-Id": info.stream_id, "Sgw-Event": kind, "Sgw-Event-Seq": str(self._events)}
        if self._traceparent:
            headers["traceparent"] = self._traceparent
        return EventOut(kind, self._events_subject, body, headers)

    def _mask(self, params: dict[str, str]) -> dict[str, str]:
        secret = self._config.secret_parameters
        return {k: ("***" if any(s in k.lower() for s in secret) else v) for k, v in params.items()}


def _subject_values(event: Start, control_id: str, route: Route) -> dict[str, str]:
    """What a route's subject templates may name, for one stream."""
    return {
        "call_id": event.call_id,
        "stream_id": event.stream_id,
        "control_id": control_id,
        "route": route.metric_label,
        "account_id": event.account_id,
    }


def _track_subjects(template: str, values: dict[str, str]) -> tuple[str, str]:
    inbound, outbound = (render(template, {**values, "track": name}) for name in _TRACK_NAMES)
    return inbound, outbound


def _published_fields(info: StreamInfo, route: Route) -> dict[str, Any]:
    """``started``'s word on what the route publishes: the codec on its subject (the provider's, or
    the transform's), its copies with their subjects and codecs, and any transform that cannot
    apply to this stream's codec (that audio is then published untouched, labelled as it is)."""
    fields: dict[str, Any] = {"published_codec": (info.published_codec or info.codec).label}
    skipped = published(info.codec, route.transform)[1]
    if skipped is not None:
        fields["transform_skipped"] = skipped
    if info.copies:
        names = [name for name in _TRACK_NAMES if name in info.tracks] or list(_TRACK_NAMES)
        entries = []
        for copy, spec in zip(info.copies, route.copies, strict=True):
            entry: dict[str, Any] = {
                "subjects": {name: copy.subjects[_TRACK_INDEX[name]] for name in names},
                "codec": (copy.codec or info.codec).label,
            }
            reason = published(info.codec, spec.transform)[1]
            if reason is not None:
                entry["transform_skipped"] = reason
            entries.append(entry)
        fields["copies"] = entries
    return fields

"""The per-stream state machine: canonical events in, actions out (sans-IO).

Rule 1: every rule about message order lives in the transition table below, not in the shell.
Rule 2: no clocks, no awaits, no logging, no metrics. Time is passed in; the shell measures.

The session resolves the stream's route once, at ``start``, from the table current at that moment
(a stream keeps its route for life), checks the bearer token against it, and precomputes the
subjects and constant headers so each media frame costs one dict and one counter update. Sequence
anomalies are detected per track from ``media.timestamp`` (the media clock, docs/pitfalls.md item 18): a jump
of more than one frame is a gap, a timestamp seen before is a duplicate, an older unseen one is a
reordered frame. They are counted, never hidden: every frame is published as received.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final

from gateway.errors import GatewayError, RemoteProtocolError, RouteNotFound, Unauthorized
from gateway.protocol.actions import Action, AudioOut, Close, EventOut, Started, StreamInfo
from gateway.protocol.events import Connected, Dtmf, Ignored, InboundEvent, Mark, Media, Start, Stop
from gateway.protocol.media import Codec
from sgw_routes.model import Route, RoutingTable
from sgw_routes.subjects import render

_SEEN_WINDOW: Final = 64


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
        Ignored: "ignored",
    },
    State.STREAMING: {
        Connected: "!connected_after_start",
        Start: "!duplicate_start",
        Media: "media",
        Dtmf: "dtmf",
        Mark: "mark",
        Stop: "stop",
        Ignored: "ignored",
    },
    State.CLOSED: {},
}


@dataclass(slots=True)
class TrackStats:
    """Per-track counters and the gateway's contiguous ``Sgw-Seq``."""

    subject: str
    seq: int = 0
    frames: int = 0
    bytes: int = 0
    gaps: int = 0
    duplicates: int = 0
    reordered: int = 0
    highest_ts: int | None = None
    seen: deque[int] = field(default_factory=lambda: deque(maxlen=_SEEN_WINDOW))
    headers: dict[str, str] = field(default_factory=dict)
    """Constant headers of this track (codec, stream id, traceparent), copied per frame."""

    def observe(self, ts: int | None, frame_ms: float) -> None:
        if ts is None:
            return
        if self.highest_ts is None or ts > self.highest_ts:
            if self.highest_ts is not None and frame_ms > 0:
                missing = round((ts - self.highest_ts) / frame_ms) - 1
                if missing > 0:
                    self.gaps += missing
            self.highest_ts = ts
        elif ts in self.seen:
            self.duplicates += 1
            return
        else:
            self.reordered += 1
        self.seen.append(ts)


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """Per-process constants the session needs (from settings), resolved once."""

    max_payload_bytes: int = 16384
    secret_parameters: tuple[str, ...] = ()
    provider_hint: str | None = None


def _provider(stream_id: str, connected_version: str | None) -> str:
    # Twilio ids are MZ + 32 hex and its connected says 1.0.0; SignalWire uses UUIDs and 0.2.0.
    if stream_id.startswith("MZ") or connected_version == "1.0.0":
        return "twilio"
    return "signalwire"


class StreamSession:
    """One provider stream from upgrade to close."""

    def __init__(
        self,
        *,
        tables: Callable[[], RoutingTable],
        config: SessionConfig,
        path_key: str | None = None,
        token: str | None = None,
        traceparent: Callable[[StreamInfo], str] | None = None,
    ) -> None:
        self.state = State.AWAIT_START
        self.info: StreamInfo | None = None
        self.stop_reason: str | None = None
        self._tables = tables
        self._config = config
        self._path_key = path_key
        self._token = token
        self._traceparent_factory = traceparent
        self._traceparent = ""
        self._connected_version: str | None = None
        self._tracks: dict[str, TrackStats] = {}
        self._events_subject = ""
        self._frame_ms_per_byte = 0.0
        self.ignored = 0

    def __repr__(self) -> str:  # never show the token
        return f"StreamSession(state={self.state.value}, stream={self.info.stream_id if self.info else None})"

    @property
    def traceparent(self) -> str:
        return self._traceparent

    @property
    def tracks(self) -> dict[str, TrackStats]:
        return self._tracks

    def receive(self, event: InboundEvent, now: float) -> list[Action]:
        """Feed one event. Raises :class:`GatewayError` on a violation; call :meth:`fail` then."""
        if type(event) is Media and self.state is State.STREAMING:
            return self._on_media(event, now)  # the per-frame fast path skips the table lookup
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
        route = self._tables().match(control_id, event.tracks, event.custom_parameters)
        if route is None:
            raise RouteNotFound(f"no route for control_id {control_id[:64]!r}")
        if not route.accepts_token(self._token):
            raise Unauthorized("bearer token rejected for this route")
        self._token = None  # not needed any more; do not keep a secret longer than necessary
        values = _subject_values(event, control_id, route)
        info = StreamInfo(
            call_id=event.call_id,
            stream_id=event.stream_id,
            account_id=event.account_id,
            control_id=control_id,
            route=route,
            provider=self._config.provider_hint or _provider(event.stream_id, self._connected_version),
            tracks=event.tracks,
            codec=event.codec,
            custom_parameters=self._mask(event.custom_parameters),
            playback_subject=render(route.playback_subject, values) if route.playback_subject else None,
        )
        self.info = info
        self.state = State.STREAMING
        if self._traceparent_factory is not None:
            self._traceparent = self._traceparent_factory(info)
            self._traceparent_factory = None  # used once; dropping it breaks the cycle with the shell
        self._prepare(values, route, event.codec)
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
        )
        return [Started(info), started]

    def _prepare(self, values: dict[str, str], route: Route, codec: Codec) -> None:
        self._events_subject = render(route.events_subject, values)
        base = {"Sgw-Codec": codec.label, "Sgw-Stream-Id": values["stream_id"]}
        if self._traceparent:
            base["traceparent"] = self._traceparent
        for track in ("inbound", "outbound"):
            subject = render(route.subject, {**values, "track": track})
            self._tracks[track] = TrackStats(subject=subject, headers=dict(base))
        self._frame_ms_per_byte = 1.0 / codec.bytes_per_ms if codec.bytes_per_ms else 0.0

    def _on_media(self, event: Media, now: float) -> list[Action]:
        payload = event.payload
        if len(payload) > self._config.max_payload_bytes:
            raise RemoteProtocolError(
                f"media payload of {len(payload)} bytes exceeds {self._config.max_payload_bytes}",
                reason="payload_too_big",
            )
        stats = self._tracks[event.track]
        stats.seq += 1
        stats.frames += 1
        stats.bytes += len(payload)
        ts = event.timestamp
        stats.observe(ts, len(payload) * self._frame_ms_per_byte)
        headers = stats.headers.copy()
        headers["Sgw-Seq"] = str(stats.seq)
        if ts is not None:
            headers["Sgw-Ts"] = str(ts)
        return [AudioOut(event.track, stats.subject, payload, headers, now)]

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
            for name, t in self._tracks.items()
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
        headers = {"Sgw-Stream-Id": info.stream_id, "Sgw-Event": kind}
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


def route_candidates_accept(table: RoutingTable, path_key: str, token: str | None) -> bool:
    """Upgrade-time check: could any route this key may resolve to accept this token?"""
    candidates: Sequence[Route] = table.candidates(path_key)
    return not candidates or any(r.accepts_token(token) for r in candidates)

"""Every Prometheus metric the gateway exports, defined in one place (docs/conventions.md sections 9 and 10).

Names start with ``sgw_`` and use base units. Labels are bounded: ``route`` (a StreamRoute name),
``provider``, ``track``, ``reason`` and ``code``; call and stream ids never become labels. The
registry is injected: production passes the default one, each test a fresh one. The dashboard and
alert tests check every query against :data:`METRIC_NAMES`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.observability.collector import CountedStream, StreamTotals
from gateway.protocol.auth import FAILURE_KINDS as AUTH_FAILURE_KINDS
from sgw_routes.model import PROVIDERS

_LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class GatewayMetrics:
    """The prometheus_client metrics, for what happens per stream or rarer; the per-frame counters
    are plain integers on the streams, exported by :class:`~gateway.observability.collector.StreamTotals`'s
    collector once :meth:`watch_streams` is called."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.stream_totals = StreamTotals()
        self.streams_active = Gauge(
            "sgw_streams_active", "Streams currently open, by route.", ["route"], registry=registry
        )
        self.streams_started = Counter(
            "sgw_streams_started_total",
            "Streams accepted (start received, route resolved).",
            ["route", "provider"],
            registry=registry,
        )
        self.streams_closed = Counter(
            "sgw_streams_closed_total",
            "Sockets closed, by route, WebSocket close code and reason.",
            ["route", "code", "reason"],
            registry=registry,
        )
        self.connections_active = Gauge(
            "sgw_ws_connections_active",
            "Open WebSocket connections (including those not started yet).",
            registry=registry,
        )
        self.upgrades_rejected = Counter(
            "sgw_ws_upgrades_rejected_total",
            "WebSocket upgrades refused before 101, by reason.",
            ["reason"],
            registry=registry,
        )
        self.events_published = Counter(
            "sgw_events_published_total",
            "Lifecycle events published, by kind (started, stopped, dtmf, ...).",
            ["reason"],
            registry=registry,
        )
        self.events_dropped = Counter(
            "sgw_events_dropped_total",
            "Lifecycle events refused, by reason (flood: more than buffer.max_events queued, the stream is closed; "
            "JetStream routes: no_stream, stream_full, rejected when the stream refuses them).",
            ["reason"],
            registry=registry,
        )
        self.protocol_errors = Counter(
            "sgw_protocol_errors_total",
            "Provider messages that broke the protocol, by reason.",
            ["reason"],
            registry=registry,
        )
        self.messages_ignored = Counter(
            "sgw_messages_ignored_total",
            "Well-formed messages ignored (unknown event kinds).",
            ["reason"],
            registry=registry,
        )
        self.internal_errors = Counter(
            "sgw_internal_errors_total",
            "Streams ended by an unexpected error in the gateway (closed with 1011; a bug: see the log).",
            registry=registry,
        )
        self.auth_failures = Counter(
            "sgw_auth_failures_total",
            "Streams refused for their credentials: reason missing (none presented) or invalid; kind is "
            "what was presented (bearer, basic, twilio_signature, multiple, none).",
            ["reason", "kind"],
            registry=registry,
        )
        self.publish_latency = Histogram(
            "sgw_publish_latency_seconds",
            "Time from reading a frame off the socket to writing it to the NATS connection (1 frame in 64 sampled).",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.buffer_frames = Gauge(
            "sgw_buffer_frames",
            "Audio frames waiting in stream buffers (all streams).",
            registry=registry,
        )
        self.buffer_capacity = Gauge(
            "sgw_buffer_capacity_frames",
            "Buffer capacity per stream (setting buffer.max_frames).",
            registry=registry,
        )
        self.buffer_fill_max = Gauge(
            "sgw_buffer_fill_ratio_max",
            "Fullest stream buffer, as a fraction of its capacity.",
            registry=registry,
        )
        self.nats_connected = Gauge("sgw_nats_connected", "1 while the NATS connection is up.", registry=registry)
        self.nats_reconnects = Counter("sgw_nats_reconnects_total", "NATS reconnections.", registry=registry)
        self.nats_inflight = Gauge(
            "sgw_nats_unconfirmed_messages",
            "Messages handed to NATS and not yet confirmed by a PING/PONG.",
            registry=registry,
        )
        self.route_table_version = Gauge(
            "sgw_route_table_version", "Version of the routing table in use.", registry=registry
        )
        self.route_table_routes = Gauge(
            "sgw_route_table_routes", "Routes in the routing table in use.", registry=registry
        )
        self.route_table_updates = Counter(
            "sgw_route_table_updates_total",
            "Routing table swaps, by outcome (applied, invalid).",
            ["reason"],
            registry=registry,
        )
        self.status_callbacks = Counter(
            "sgw_status_callbacks_total",
            "Provider status callbacks received on /status, by outcome (accepted, invalid: 400, unauthorized: "
            "401, unavailable: 503 while NATS is down).",
            ["provider", "reason"],
            registry=registry,
        )
        self.playback_messages = Counter(
            "sgw_playback_messages_total",
            "Back-channel messages from consumers to providers, by kind (media, mark, clear, dtmf) or refusal "
            "(invalid, not_streaming, unsupported: the provider has no such message; dropped: paced frames "
            "past the pacer's bound or still waiting when the stream ended).",
            ["reason"],
            registry=registry,
        )
        self.backpressure = Gauge(
            "sgw_backpressure_active",
            "1 while the provider sockets are paused because NATS is not keeping up.",
            registry=registry,
        )
        self.backpressure_pauses = Counter(
            "sgw_backpressure_pauses_total",
            "Times the provider sockets were paused because NATS was not keeping up.",
            registry=registry,
        )
        self.stream_pauses = Counter(
            "sgw_stream_pauses_total",
            "Times one stream's socket was paused because its durable route's acknowledgements lagged.",
            ["route"],
            registry=registry,
        )
        self.loop_lag = Gauge(
            "sgw_event_loop_lag_seconds",
            "How late the event loop runs a timer (smoothed): above server.max_loop_lag new streams get 503.",
            registry=registry,
        )
        self.ready = Gauge("sgw_ready", "1 while /readyz answers 200.", registry=registry)
        self.draining = Gauge("sgw_draining", "1 after SIGTERM, while live streams drain.", registry=registry)
        self._initialise_known_labels()

    def watch_streams(
        self, live: Callable[[], Iterable[CountedStream]], resent: Callable[[], int], inflight: Callable[[], int]
    ) -> None:
        """Export the per-frame counters of these streams (and of those already retired)."""
        self.registry.register(self.stream_totals.collector(live, resent))
        self.nats_inflight.set_function(lambda: float(inflight()))

    def _initialise_known_labels(self) -> None:
        """Export zero-valued series for every known reason, so ``rate()`` and alerts see 0, not nothing."""
        for reason in PROTOCOL_ERROR_REASONS:
            self.protocol_errors.labels(reason)
        self.auth_failures.labels("missing", "none")
        for kind in AUTH_FAILURE_KINDS[1:]:
            self.auth_failures.labels("invalid", kind)
        for reason in ("draining", "stream_limit", "unauthorized", "no_route_table", "overloaded", "unknown_provider"):
            self.upgrades_rejected.labels(reason)
        self.messages_ignored.labels("unknown_event")
        for reason in ("flood", "no_stream", "stream_full", "rejected"):
            self.events_dropped.labels(reason)
        for reason in ("applied", "invalid"):
            self.route_table_updates.labels(reason)
        for reason in ("media", "mark", "clear", "dtmf", "invalid", "not_streaming", "unsupported", "dropped"):
            self.playback_messages.labels(reason)
        for provider in (*PROVIDERS, "unknown"):
            for reason in STATUS_CALLBACK_REASONS:
                self.status_callbacks.labels(provider, reason)


STATUS_CALLBACK_REASONS: Final = ("accepted", "invalid", "unauthorized", "unavailable")
"""Outcomes of a ``/status`` callback (``sgw_status_callbacks_total{reason}``)."""

PROTOCOL_ERROR_REASONS: Final = (
    "malformed",
    "binary_frame",
    "too_big",
    "payload_too_big",
    "media_before_start",
    "event_before_start",
    "duplicate_start",
    "duplicate_connected",
    "connected_after_start",
    "start_timeout",
    "receive_timeout",
    "heartbeat_timeout",
    "ws_error",
    "event_flood",
)
"""Every ``reason`` a :class:`~gateway.errors.RemoteProtocolError` can carry (a bounded label)."""


def metric_names(metrics: GatewayMetrics) -> set[str]:
    """Every sample name the registry can expose (``_total``, ``_bucket``... included)."""
    names: set[str] = set()
    for collector in metrics.registry.collect():
        names.add(collector.name)
        for sample in collector.samples:
            names.add(sample.name)
    return names


METRIC_NAMES: Final = frozenset(
    {
        "sgw_streams_active",
        "sgw_streams_started_total",
        "sgw_streams_closed_total",
        "sgw_ws_connections_active",
        "sgw_ws_upgrades_rejected_total",
        "sgw_frames_received_total",
        "sgw_audio_bytes_received_total",
        "sgw_frames_published_total",
        "sgw_frames_dropped_total",
        "sgw_frames_resent_total",
        "sgw_sequence_anomalies_total",
        "sgw_events_published_total",
        "sgw_events_dropped_total",
        "sgw_protocol_errors_total",
        "sgw_messages_ignored_total",
        "sgw_auth_failures_total",
        "sgw_internal_errors_total",
        "sgw_publish_latency_seconds",
        "sgw_buffer_frames",
        "sgw_buffer_capacity_frames",
        "sgw_buffer_fill_ratio_max",
        "sgw_nats_connected",
        "sgw_nats_reconnects_total",
        "sgw_nats_unconfirmed_messages",
        "sgw_route_table_version",
        "sgw_route_table_routes",
        "sgw_route_table_updates_total",
        "sgw_status_callbacks_total",
        "sgw_playback_messages_total",
        "sgw_ready",
        "sgw_backpressure_active",
        "sgw_backpressure_pauses_total",
        "sgw_stream_pauses_total",
        "sgw_event_loop_lag_seconds",
        "sgw_draining",
    }
)
"""Metric family names as they appear in PromQL (counters with their ``_total`` suffix)."""

"""The per-frame counters, exported at scrape time from plain integers.

A Prometheus counter takes a lock per increment, and the per-frame path used to pay five of them
(received, bytes, published, latency, and the drop and anomaly bookkeeping). Streams now count in
plain integers on their own objects (the session's track stats, the outbox's held and dropped
counts), and this collector reads them when ``/metrics`` is scraped: the live streams
plus the totals of the streams that have ended, kept per label set (bounded: routes x tracks x
reasons). A stream's counts move from live to ended in one synchronous step, so every series only
ever grows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Final, Protocol

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

TRACK_NAMES: Final = ("inbound", "outbound")


class TrackCounts(Protocol):
    @property
    def frames(self) -> int: ...

    @property
    def bytes(self) -> int: ...

    @property
    def gaps(self) -> int: ...

    @property
    def duplicates(self) -> int: ...

    @property
    def reordered(self) -> int: ...


class CountedStream(Protocol):
    """What the collector reads off a stream (the transport's stream object provides it)."""

    @property
    def route(self) -> str: ...

    @property
    def track_counts(self) -> Sequence[TrackCounts]: ...

    @property
    def published(self) -> Sequence[int]: ...

    @property
    def dropped(self) -> Mapping[str, Sequence[int]]: ...


_KEYS: Final = ("received", "bytes", "published", "gap", "duplicate", "reordered")


class StreamTotals:
    """The counts of ended streams, by label set; and the collector that adds the live ones."""

    def __init__(self) -> None:
        self._by_track: dict[tuple[str, str, str], int] = {}
        """(key, route, track) -> count, for the per-track families."""
        self._dropped: dict[tuple[str, str], int] = {}
        """(route, reason) -> frames dropped."""

    def retire(self, stream: CountedStream) -> None:
        for key, route, track, value in _track_values(stream):
            if value:
                k = (key, route, track)
                self._by_track[k] = self._by_track.get(k, 0) + value
        for reason, per_track in stream.dropped.items():
            k2 = (stream.route, reason)
            self._dropped[k2] = self._dropped.get(k2, 0) + sum(per_track)

    def collector(self, live: Callable[[], Iterable[CountedStream]], resent: Callable[[], int]) -> Collector:
        return _StreamCollector(self, live, resent)


def _track_values(stream: CountedStream) -> Iterator[tuple[str, str, str, int]]:
    route = stream.route
    for index, counts in enumerate(stream.track_counts):
        track = TRACK_NAMES[index]
        yield "received", route, track, counts.frames
        yield "bytes", route, track, counts.bytes
        yield "published", route, track, stream.published[index]
        yield "gap", route, track, counts.gaps
        yield "duplicate", route, track, counts.duplicates
        yield "reordered", route, track, counts.reordered


class _StreamCollector(Collector):
    def __init__(
        self, totals: StreamTotals, live: Callable[[], Iterable[CountedStream]], resent: Callable[[], int]
    ) -> None:
        self._totals = totals
        self._live = live
        self._resent = resent

    def describe(self) -> Iterable[CounterMetricFamily]:
        return list(self._families())

    def collect(self) -> Iterable[CounterMetricFamily]:
        by_track = dict(self._totals._by_track)
        dropped = dict(self._totals._dropped)
        for stream in self._live():
            for key, route, track, value in _track_values(stream):
                k = (key, route, track)
                by_track[k] = by_track.get(k, 0) + value
            for reason, per_track in stream.dropped.items():
                k2 = (stream.route, reason)
                dropped[k2] = dropped.get(k2, 0) + sum(per_track)
        families = self._families()
        received, size, published, dropped_f, anomalies, resent = families
        for (key, route, track), value in sorted(by_track.items()):
            if key == "received":
                received.add_metric([route, track], value)
            elif key == "bytes":
                size.add_metric([route, track], value)
            elif key == "published":
                published.add_metric([route, track], value)
            elif value:
                anomalies.add_metric([route, track, key], value)
        for (route, reason), value in sorted(dropped.items()):
            dropped_f.add_metric([route, reason], value)
        resent.add_metric([], self._resent())
        return families

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, ...]:
        return (
            CounterMetricFamily(
                "sgw_frames_received", "Audio frames received from providers.", labels=["route", "track"]
            ),
            CounterMetricFamily(
                "sgw_audio_bytes_received", "Decoded audio payload bytes received.", labels=["route", "track"]
            ),
            CounterMetricFamily(
                "sgw_frames_published",
                "Audio frames handed to NATS (once each; frames sent again are sgw_frames_resent_total).",
                labels=["route", "track"],
            ),
            CounterMetricFamily(
                "sgw_frames_dropped",
                "Audio frames not delivered, by reason (backpressure, shutdown; durable routes: no_stream, "
                "stream_full, rejected).",
                labels=["route", "reason"],
            ),
            CounterMetricFamily(
                "sgw_sequence_anomalies",
                "Anomalies in the provider's media timestamps: gap (frames missing), duplicate, reordered.",
                labels=["route", "track", "reason"],
            ),
            CounterMetricFamily(
                "sgw_frames_resent",
                "Messages sent again because NATS never confirmed them (a connection lost, or a JetStream "
                "acknowledgement that did not come in time).",
            ),
        )

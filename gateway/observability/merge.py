"""How the supervisor of ``streamgw serve --workers N`` combines its workers' ``/metrics`` into one.

Each worker is a whole gateway with its own registry; Prometheus scrapes only the supervisor, so
its exposition must read as if one process served every stream. The rule for a family is looked
up in :data:`MERGE_RULES`, keyed by the name as PromQL spells it (counters with ``_total``, as in
:data:`gateway.observability.metrics.METRIC_NAMES`); a unit test keeps the table in step with that
list. Unknown families fall back by type: counters and histograms are summed, anything else is
kept per worker. Per-worker series gain a ``worker`` label.

Counters must never go backwards, or Prometheus reads a reset and ``rate()`` spikes by the
surviving workers' whole totals. When a worker dies, :class:`CounterCarry` keeps what it had
counted at its last scrape and adds it to every later merge.

Used only by :mod:`gateway.supervisor`; everything here is pure (text in, text out).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

WORKER_LABEL: Final = "worker"
"""The label per-worker series gain (the worker's index: ``"0"`` .. ``"N-1"``)."""


class Rule(enum.Enum):
    SUM = "sum"
    """Counters, histograms, and gauges that count things (streams, frames, connections)."""
    MAX = "max"
    """Ratios and maxima, and settings every worker reports alike."""
    MIN = "min"
    """Creation timestamps (``*_created``): the earliest is the family's start."""
    PER_WORKER = "per_worker"
    """State of one process (connected, ready, table version): a sum would hide a bad worker."""


_S, _X, _W = Rule.SUM, Rule.MAX, Rule.PER_WORKER

MERGE_RULES: Final[Mapping[str, Rule]] = MappingProxyType(
    {
        # Streams and connections: the pod's totals.
        "sgw_streams_active": _S,
        "sgw_streams_started_total": _S,
        "sgw_streams_closed_total": _S,
        "sgw_ws_connections_active": _S,
        "sgw_ws_upgrades_rejected_total": _S,
        # Audio and events.
        "sgw_frames_received_total": _S,
        "sgw_audio_bytes_received_total": _S,
        "sgw_frames_published_total": _S,
        "sgw_frames_dropped_total": _S,
        "sgw_frames_resent_total": _S,
        "sgw_sequence_anomalies_total": _S,
        "sgw_events_published_total": _S,
        "sgw_events_dropped_total": _S,
        "sgw_protocol_errors_total": _S,
        "sgw_messages_ignored_total": _S,
        "sgw_auth_failures_total": _S,
        "sgw_internal_errors_total": _S,
        "sgw_publish_latency_seconds": _S,
        "sgw_status_callbacks_total": _S,
        "sgw_playback_messages_total": _S,
        # Buffers: frames held add up; capacity is per stream (a setting), fill is a worst case.
        "sgw_buffer_frames": _S,
        "sgw_buffer_capacity_frames": _X,
        "sgw_buffer_fill_ratio_max": _X,
        # Each worker has its own NATS connection and its own view of the route table.
        "sgw_nats_connected": _W,
        "sgw_nats_reconnects_total": _S,
        "sgw_nats_unconfirmed_messages": _S,
        "sgw_route_table_version": _W,
        "sgw_route_table_routes": _W,
        "sgw_route_table_updates_total": _S,
        # Back-pressure and loop lag drive each worker's own admission control.
        "sgw_backpressure_active": _W,
        "sgw_backpressure_pauses_total": _S,
        "sgw_stream_pauses_total": _S,
        "sgw_event_loop_lag_seconds": _W,
        # Readiness and drain are per process; the supervisor's /readyz combines them.
        "sgw_ready": _W,
        "sgw_draining": _W,
    }
)
"""Family name (as in PromQL) -> how the workers' series combine."""

_MONOTONIC_TYPES: Final = frozenset({"counter", "histogram"})
_CREATED: Final = "_created"

_LabelKey = tuple[tuple[str, str], ...]
_SampleKey = tuple[str, _LabelKey]


def family_key(family: Metric) -> str:
    """The family's name as PromQL (and :data:`MERGE_RULES`) spells it: the parser strips a
    counter's ``_total``."""
    return f"{family.name}_total" if family.type == "counter" else family.name


def rule_for(family: Metric) -> Rule:
    rule = MERGE_RULES.get(family_key(family))
    if rule is not None:
        return rule
    if family.type in _MONOTONIC_TYPES:
        return Rule.SUM
    if family.type == "gauge" and family.name.endswith(_CREATED):
        return Rule.MIN
    return Rule.PER_WORKER


def parse(text: str) -> list[Metric]:
    """Prometheus text exposition -> families. Raises ``ValueError`` on malformed text."""
    return list(text_string_to_metric_families(text))


@dataclass
class _Family:
    name: str
    documentation: str
    type: str
    rule: Rule
    samples: dict[_SampleKey, tuple[str, dict[str, str], float]] = field(default_factory=dict)

    def add(self, name: str, labels: Mapping[str, str], value: float) -> None:
        key = (name, tuple(sorted(labels.items())))
        previous = self.samples.get(key)
        if previous is None:
            self.samples[key] = (name, dict(labels), value)
            return
        old = previous[2]
        if self.rule is Rule.MAX:
            combined = max(old, value)
        elif self.rule is Rule.MIN:
            combined = min(old, value)
        else:
            # SUM; PER_WORKER keys never collide (the worker label tells them apart), unless a
            # worker exposes the same series twice, which summing reports rather than hides.
            combined = old + value
        self.samples[key] = (name, previous[1], combined)

    def metric(self) -> Metric:
        out = Metric(self.name, self.documentation, self.type)
        for name, labels, value in self.samples.values():
            out.add_sample(name, labels, value)
        return out


@dataclass
class CounterCarry:
    """What workers that have since died had counted, so the merged counters never decrease.

    Owned by one supervisor. :meth:`retire` is called with a worker's last scrape when that
    worker exits; counts made after that scrape are lost (under-counted, never double-counted).
    """

    _families: dict[str, _Family] = field(default_factory=dict)

    def retire(self, families: Iterable[Metric]) -> None:
        for family in families:
            if family.type not in _MONOTONIC_TYPES or rule_for(family) is not Rule.SUM:
                continue
            kept = self._families.setdefault(
                family.name, _Family(family.name, family.documentation, family.type, Rule.SUM)
            )
            for sample in family.samples:
                if not sample.name.endswith(_CREATED):
                    kept.add(sample.name, sample.labels, sample.value)

    def families(self) -> Iterator[_Family]:
        yield from self._families.values()


def merge(scrapes: Mapping[str, Sequence[Metric]], carry: CounterCarry | None = None) -> list[Metric]:
    """Combine workers' families (worker id -> its parsed ``/metrics``) by :func:`rule_for`.

    Workers that did not answer are simply absent from ``scrapes``: their per-worker series are
    missing and their counters are not part of the sums (the supervisor reports them with
    ``sgw_worker_up 0``). Families keep the order in which they are first seen.
    """
    out: dict[str, _Family] = {}
    if carry is not None:
        for kept in carry.families():
            seeded = out.setdefault(kept.name, _Family(kept.name, kept.documentation, kept.type, Rule.SUM))
            for name, labels, value in kept.samples.values():
                seeded.add(name, labels, value)
    for worker, families in scrapes.items():
        for family in families:
            rule = rule_for(family)
            target = out.get(family.name)
            if target is None:
                target = out[family.name] = _Family(family.name, family.documentation, family.type, rule)
            for sample in family.samples:
                labels = dict(sample.labels)
                if target.rule is Rule.PER_WORKER:
                    labels[WORKER_LABEL] = worker
                target.add(sample.name, labels, sample.value)
    return [family.metric() for family in out.values()]


class _Families(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def render(families: Sequence[Metric]) -> bytes:
    """Families -> Prometheus text exposition (the same writer the workers use)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)

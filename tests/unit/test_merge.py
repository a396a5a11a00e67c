"""The supervisor's merge of its workers' /metrics (gateway/observability/merge.py), on
hand-written exposition text: sums, per-worker labels, maxima, histograms, a worker that did not
answer, unknown families, counters that survive a worker's death, and the rule table kept in step
with the metrics the gateway defines."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from prometheus_client.metrics_core import Metric

from gateway.observability.merge import MERGE_RULES, WORKER_LABEL, CounterCarry, Rule, merge, parse, render
from gateway.observability.metrics import METRIC_NAMES
from gateway.supervisor import SUPERVISOR_METRIC_NAMES

WORKER_0 = """\
# HELP sgw_frames_received_total Audio frames received from providers.
# TYPE sgw_frames_received_total counter
sgw_frames_received_total{route="default",track="inbound"} 100.0
sgw_frames_received_total{route="default",track="outbound"} 90.0
# HELP sgw_streams_active Streams currently open, by route.
# TYPE sgw_streams_active gauge
sgw_streams_active{route="default"} 3.0
# HELP sgw_nats_connected 1 while the NATS connection is up.
# TYPE sgw_nats_connected gauge
sgw_nats_connected 1.0
# HELP sgw_ready 1 while /readyz answers 200.
# TYPE sgw_ready gauge
sgw_ready 1.0
# HELP sgw_route_table_version Version of the routing table in use.
# TYPE sgw_route_table_version gauge
sgw_route_table_version 7.0
# HELP sgw_buffer_fill_ratio_max Fullest stream buffer, as a fraction of its capacity.
# TYPE sgw_buffer_fill_ratio_max gauge
sgw_buffer_fill_ratio_max 0.25
# HELP sgw_buffer_capacity_frames Buffer capacity per stream (setting buffer.max_frames).
# TYPE sgw_buffer_capacity_frames gauge
sgw_buffer_capacity_frames 1500.0
# HELP sgw_publish_latency_seconds Time from reading a frame off the socket to handing it to NATS.
# TYPE sgw_publish_latency_seconds histogram
sgw_publish_latency_seconds_bucket{le="0.001",route="default"} 5.0
sgw_publish_latency_seconds_bucket{le="0.01",route="default"} 9.0
sgw_publish_latency_seconds_bucket{le="+Inf",route="default"} 10.0
sgw_publish_latency_seconds_count{route="default"} 10.0
sgw_publish_latency_seconds_sum{route="default"} 0.02
# HELP sgw_publish_latency_seconds_created Time from reading a frame off the socket to handing it to NATS.
# TYPE sgw_publish_latency_seconds_created gauge
sgw_publish_latency_seconds_created{route="default"} 1700000100.0
"""

WORKER_1 = """\
# HELP sgw_frames_received_total Audio frames received from providers.
# TYPE sgw_frames_received_total counter
sgw_frames_received_total{route="default",track="inbound"} 50.0
sgw_frames_received_total{route="sales",track="inbound"} 7.0
# HELP sgw_streams_active Streams currently open, by route.
# TYPE sgw_streams_active gauge
sgw_streams_active{route="default"} 2.0
# HELP sgw_nats_connected 1 while the NATS connection is up.
# TYPE sgw_nats_connected gauge
sgw_nats_connected 0.0
# HELP sgw_ready 1 while /readyz answers 200.
# TYPE sgw_ready gauge
sgw_ready 0.0
# HELP sgw_route_table_version Version of the routing table in use.
# TYPE sgw_route_table_version gauge
sgw_route_table_version 6.0
# HELP sgw_buffer_fill_ratio_max Fullest stream buffer, as a fraction of its capacity.
# TYPE sgw_buffer_fill_ratio_max gauge
sgw_buffer_fill_ratio_max 0.75
# HELP sgw_buffer_capacity_frames Buffer capacity per stream (setting buffer.max_frames).
# TYPE sgw_buffer_capacity_frames gauge
sgw_buffer_capacity_frames 1500.0
# HELP sgw_publish_latency_seconds Time from reading a frame off the socket to handing it to NATS.
# TYPE sgw_publish_latency_seconds histogram
sgw_publish_latency_seconds_bucket{le="0.001",route="default"} 1.0
sgw_publish_latency_seconds_bucket{le="0.01",route="default"} 1.0
sgw_publish_latency_seconds_bucket{le="+Inf",route="default"} 2.0
sgw_publish_latency_seconds_count{route="default"} 2.0
sgw_publish_latency_seconds_sum{route="default"} 3.5
# HELP sgw_publish_latency_seconds_created Time from reading a frame off the socket to handing it to NATS.
# TYPE sgw_publish_latency_seconds_created gauge
sgw_publish_latency_seconds_created{route="default"} 1700000000.0
"""


def values(families: Iterable[Metric], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Sample name -> {sorted labels: value}, for exact comparisons."""
    return {tuple(sorted(s.labels.items())): s.value for family in families for s in family.samples if s.name == name}


def merged(*texts: str | None, carry: CounterCarry | None = None) -> list[Metric]:
    """Merge worker i's text (None: worker i did not answer), then render and parse back, so
    every assertion is about the text Prometheus would read."""
    scrapes = {str(i): parse(text) for i, text in enumerate(texts) if text is not None}
    return parse(render(merge(scrapes, carry)).decode())


# ---- the rule table ---------------------------------------------------------------------------


def test_every_gateway_metric_has_a_merge_rule() -> None:
    """A new metric in gateway/observability/metrics.py fails here until someone decides how the
    supervisor combines it (summing a per-process state would hide a bad worker)."""
    assert sorted(METRIC_NAMES - MERGE_RULES.keys()) == []


def test_the_rule_table_names_only_metrics_that_exist() -> None:
    assert sorted(MERGE_RULES.keys() - METRIC_NAMES) == []


def test_counters_and_histograms_are_summed() -> None:
    """Anything else would make rate() and histogram_quantile() meaningless."""
    for name, rule in MERGE_RULES.items():
        if name.endswith("_total") or name == "sgw_publish_latency_seconds":
            assert rule is Rule.SUM, name


def test_supervisor_metrics_are_its_own() -> None:
    assert {"sgw_workers", "sgw_worker_up", "sgw_worker_restarts_total"} == SUPERVISOR_METRIC_NAMES
    assert not SUPERVISOR_METRIC_NAMES & METRIC_NAMES
    assert not SUPERVISOR_METRIC_NAMES & MERGE_RULES.keys()


# ---- merging ----------------------------------------------------------------------------------


def test_counters_sum_per_label_set() -> None:
    out = merged(WORKER_0, WORKER_1)
    assert values(out, "sgw_frames_received_total") == {
        (("route", "default"), ("track", "inbound")): 150.0,
        (("route", "default"), ("track", "outbound")): 90.0,
        (("route", "sales"), ("track", "inbound")): 7.0,
    }


def test_counts_of_things_sum() -> None:
    assert values(merged(WORKER_0, WORKER_1), "sgw_streams_active") == {(("route", "default"),): 5.0}


def test_process_state_is_kept_per_worker() -> None:
    out = merged(WORKER_0, WORKER_1)
    for name, expected in (
        ("sgw_nats_connected", {"0": 1.0, "1": 0.0}),
        ("sgw_ready", {"0": 1.0, "1": 0.0}),
        ("sgw_route_table_version", {"0": 7.0, "1": 6.0}),
    ):
        assert values(out, name) == {((WORKER_LABEL, w),): v for w, v in expected.items()}, name


def test_ratios_and_settings_take_the_maximum() -> None:
    out = merged(WORKER_0, WORKER_1)
    assert values(out, "sgw_buffer_fill_ratio_max") == {(): 0.75}
    assert values(out, "sgw_buffer_capacity_frames") == {(): 1500.0}


def test_histograms_sum_bucket_by_bucket() -> None:
    out = merged(WORKER_0, WORKER_1)
    route = ("route", "default")
    assert values(out, "sgw_publish_latency_seconds_bucket") == {
        (("le", "0.001"), route): 6.0,
        (("le", "0.01"), route): 10.0,
        (("le", "+Inf"), route): 12.0,
    }
    assert values(out, "sgw_publish_latency_seconds_count") == {(route,): 12.0}
    assert values(out, "sgw_publish_latency_seconds_sum") == {(route,): pytest.approx(3.52)}
    assert values(out, "sgw_publish_latency_seconds_created") == {(route,): 1700000000.0}, "the earliest"
    (histogram,) = [f for f in out if f.name == "sgw_publish_latency_seconds"]
    assert histogram.type == "histogram"


def test_rendered_text_keeps_types_and_help() -> None:
    text = render(merge({"0": parse(WORKER_0), "1": parse(WORKER_1)})).decode()
    assert "# TYPE sgw_frames_received_total counter\n" in text
    assert "# HELP sgw_frames_received_total Audio frames received from providers.\n" in text
    assert "# TYPE sgw_publish_latency_seconds histogram\n" in text
    assert "# TYPE sgw_ready gauge\n" in text
    assert 'sgw_ready{worker="1"} 0.0\n' in text


def test_a_worker_that_did_not_answer_is_left_out() -> None:
    out = merged(None, WORKER_1)
    assert values(out, "sgw_frames_received_total")[(("route", "default"), ("track", "inbound"))] == 50.0
    assert values(out, "sgw_ready") == {((WORKER_LABEL, "1"),): 0.0}
    assert merged(None, None) == []


def test_unknown_families_fall_back_by_type() -> None:
    text = """\
# TYPE sgw_new_things_total counter
sgw_new_things_total{reason="x"} 2.0
# TYPE sgw_new_state gauge
sgw_new_state 4.0
# TYPE sgw_new_things_created gauge
sgw_new_things_created{reason="x"} 1700000000.0
# TYPE sgw_new_untyped untyped
sgw_new_untyped 1.0
"""
    later = text.replace("1700000000.0", "1700000500.0")
    out = merged(text, later)
    assert values(out, "sgw_new_things_total") == {(("reason", "x"),): 4.0}
    assert values(out, "sgw_new_state") == {((WORKER_LABEL, "0"),): 4.0, ((WORKER_LABEL, "1"),): 4.0}
    assert values(out, "sgw_new_things_created") == {(("reason", "x"),): 1700000000.0}
    assert values(out, "sgw_new_untyped") == {((WORKER_LABEL, "0"),): 1.0, ((WORKER_LABEL, "1"),): 1.0}


def test_counters_never_go_back_when_a_worker_dies() -> None:
    """Worker 1 dies after a scrape and comes back from zero: its last counts are carried, so
    Prometheus never reads a counter reset (which would make rate() spike by the survivors' totals)."""
    carry = CounterCarry()
    before = values(merged(WORKER_0, WORKER_1, carry=carry), "sgw_frames_received_total")
    carry.retire(parse(WORKER_1))
    restarted = WORKER_1.replace(" 50.0", " 1.0").replace(" 7.0", " 0.0")
    after = values(merged(WORKER_0, restarted, carry=carry), "sgw_frames_received_total")
    for labels, value in before.items():
        assert after[labels] >= value, labels
    assert after[(("route", "default"), ("track", "inbound"))] == 151.0
    assert after[(("route", "sales"), ("track", "inbound"))] == 7.0
    # While it is down, its carried counts are still there; its gauges are not.
    down = merged(WORKER_0, None, carry=carry)
    assert values(down, "sgw_frames_received_total")[(("route", "sales"), ("track", "inbound"))] == 7.0
    assert values(down, "sgw_publish_latency_seconds_count") == {(("route", "default"),): 12.0}
    assert values(down, "sgw_streams_active") == {(("route", "default"),): 3.0}
    assert values(down, "sgw_ready") == {((WORKER_LABEL, "0"),): 1.0}


def test_malformed_text_is_an_error() -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse("sgw_ready{worker=} nonsense\n")

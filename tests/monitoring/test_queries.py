"""Every query in the dashboard and the alert rules names only metrics the code exports
(gateway/observability/metrics.py, the `serve --workers` supervisor's, the operator's
sgw_operator_* names, and `up`)."""

from __future__ import annotations

import pytest

from tests.monitoring.promql import allowed, metric_names, unknown_names
from tests.monitoring.sources import alert_rules, dashboard, dashboard_queries

pytestmark = pytest.mark.timeout(60)


def test_dashboard_queries_use_exported_metrics_only() -> None:
    exprs = dashboard_queries(dashboard())
    assert len(exprs) > 30
    assert unknown_names(exprs) == {}
    assert all(metric_names(e) for e in exprs), "a query that reads no metric"


def test_alert_expressions_use_exported_metrics_only() -> None:
    exprs = [rule["expr"] for rule in alert_rules()]
    assert unknown_names(exprs) == {}
    assert all(metric_names(e) for e in exprs)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (route) (rate(sgw_frames_received_total{route=~"$route"}[$__rate_interval]))',
            {"sgw_frames_received_total"},
        ),
        (
            "histogram_quantile(0.99, sum by (le) (rate(sgw_publish_latency_seconds_bucket[5m]))) > 0.1",
            {"sgw_publish_latency_seconds_bucket"},
        ),
        ('absent(up{job="stream-gateway"} == 1)', {"up"}),
        ("a / on (pod) group_left (route) b unless c offset 1d > 1e-3", {"a", "b", "c"}),
        ('{__name__="sgw_ready", job="x"}', {"sgw_ready"}),
        ('count(x{msg="rate(y[5m])"}) or vector(0)', {"x"}),
        ('label_values(sgw_streams_active{namespace=~"$namespace"}, route)', {"sgw_streams_active"}),
    ],
)
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_allowed_names() -> None:
    assert allowed("sgw_streams_active")
    assert allowed("sgw_operator_table_version")
    assert allowed("sgw_worker_restarts_total")
    assert allowed("up")
    assert allowed("sgw_publish_latency_seconds_bucket")
    assert allowed("sgw_publish_latency_seconds_count")
    assert not allowed("sgw_streams_total")
    assert not allowed("sgw_frames_dropped_total_bucket"), "only histograms have _bucket samples"
    assert not allowed("sgw_operator_unknown")

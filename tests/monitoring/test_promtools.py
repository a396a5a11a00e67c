"""The Prometheus helper against the real binary: it starts, scrapes, answers and stops; and a
live Prometheus parses every dashboard query (promtool only checks the rule files)."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.monitoring import promtools
from tests.monitoring.promtools import PrometheusError, PrometheusServer, free_port, prometheus_binary
from tests.monitoring.sources import dashboard, dashboard_queries

pytestmark = pytest.mark.timeout(120)

GRAFANA_VARS = {
    "$__rate_interval": "1m",
    "$__range": "1h",
    "$namespace": ".*",
    "$route": ".*",
}


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    binary = prometheus_binary()
    with PrometheusServer(binary, tmp_path, {}, scrape_interval="1s", scrape_self=True) as server:
        yield server


def test_prometheus_scrapes_itself(prometheus: PrometheusServer) -> None:
    assert prometheus.url.startswith("http://127.0.0.1:")
    rows = prometheus.wait_for('up{job="prometheus"} == 1', timeout=30)
    assert rows[0]["metric"]["instance"] == f"127.0.0.1:{prometheus.port}"
    samples = prometheus.wait_for("prometheus_build_info", timeout=30)
    assert samples[0]["metric"]["version"]


def test_bad_queries_raise(prometheus: PrometheusServer) -> None:
    with pytest.raises(PrometheusError, match="bad_data"):
        prometheus.query("sum(rate(up[5m])")


def test_every_dashboard_query_parses(prometheus: PrometheusServer) -> None:
    for expr in dashboard_queries(dashboard()):
        label_values = re.match(r"^label_values\((.*),\s*\w+\)$", expr)
        query = label_values.group(1) if label_values else expr
        for var, value in GRAFANA_VARS.items():
            query = query.replace(var, value)
        assert "$" not in query, f"unknown Grafana variable in {expr!r}"
        prometheus.query(query)


def test_stop_is_idempotent_and_frees_the_port(tmp_path: Path) -> None:
    server = PrometheusServer(prometheus_binary(), tmp_path, {"nothing": [f"127.0.0.1:{free_port()}"]})
    server.start()
    port = server.port
    rows = server.wait_for('up{job="nothing"} == 0', timeout=30)
    assert rows
    server.stop()
    server.stop()
    with pytest.raises(urllib.error.URLError, match="refused"):  # nothing answers any more
        urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2)


def test_a_missing_binary_fails_under_ci_and_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(promtools.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y prometheus"):
        promtools.require("promtool")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="promtool not found"):
        promtools.require("promtool")

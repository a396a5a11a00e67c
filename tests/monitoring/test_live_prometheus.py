"""The real Prometheus scraping a live gateway under simulated calls (issue 4, item 4).

Every dashboard query and every alert expression must evaluate without error against real
series, and the panels for streams, frames and latency must return data while calls run.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from gateway.embedded_nats import EmbeddedNats
from gateway.server import GatewayServer
from gateway.settings import load_settings
from gateway.tools.simulate import SimulateOptions, simulate
from tests.monitoring.promtools import PrometheusServer, prometheus_binary
from tests.monitoring.sources import alert_rules, dashboard, dashboard_queries, panels

# Grafana's variables, replaced the way Grafana would for "All" and a short dashboard range.
SUBSTITUTIONS = {"$__rate_interval": "10s", "$__range": "1m", "$__interval": "1s", "$namespace": ".*", "$route": ".*"}


def grafana_to_promql(expr: str) -> str:
    # label_values(metric, label) is Grafana's variable query; its PromQL equivalent is a group by.
    expr = re.sub(r"^label_values\((.+),\s*(\w+)\)$", r"group by (\2) (\1)", expr.strip())
    return re.sub(r"\$\w+", lambda m: SUBSTITUTIONS.get(m.group(0), m.group(0)), expr)


@pytest.mark.timeout(180)
async def test_dashboard_and_alerts_against_a_live_gateway(nats_server: EmbeddedNats, tmp_path: Path) -> None:
    binary = prometheus_binary()
    settings = load_settings(
        {},
        {
            "server.port": 0,
            "server.internal_port": 0,
            "server.host": "127.0.0.1",
            "nats.url": nats_server.url,
            "routing.source": "static",
        },
    )
    server = GatewayServer(settings)
    endpoints = await server.start()
    target = endpoints.internal_url.removeprefix("http://")
    prom = PrometheusServer(binary, tmp_path, {"stream-gateway": [target]}, scrape_interval="1s")
    await asyncio.to_thread(prom.start)
    try:
        calls = asyncio.create_task(
            simulate(
                SimulateOptions(url=endpoints.ws_url, calls=5, track="both", duration=8.0, realtime=True, ramp=1.0)
            )
        )
        # while calls are live: streams, frames and latency panels have data
        await asyncio.to_thread(prom.wait_for, "sum(sgw_streams_active) > 0", bool, 20)
        await asyncio.to_thread(prom.wait_for, "sum(rate(sgw_frames_published_total[10s])) > 0", bool, 20)
        board = dashboard()
        live_titles = {"Live calls", "Frames per second by track", "Publish latency (socket read to NATS)"}
        checked = set()
        for panel in panels(board):
            if panel.get("title") not in live_titles:
                continue
            for target_ in panel.get("targets", []):
                result = await asyncio.to_thread(prom.wait_for, grafana_to_promql(target_["expr"]), bool, 20)
                assert result, panel["title"]
            checked.add(panel["title"])
        assert checked == live_titles
        # every query and every alert expression evaluates without error
        for expr in dashboard_queries(board):
            await asyncio.to_thread(prom.query, grafana_to_promql(expr))
        rules = alert_rules()
        assert rules
        for rule in rules:
            await asyncio.to_thread(prom.query, rule["expr"])
        report = await calls
        assert all(c.close_code == 1000 for c in report.calls)
        # after the calls, the close-code panel shows normal closes
        closed = await asyncio.to_thread(prom.wait_for, 'sum(sgw_streams_closed_total{code="1000"}) >= 5', bool, 20)
        assert closed
        # and with the gateway healthy no gateway alert is firing
        firing = await asyncio.to_thread(
            prom.query, 'ALERTS{alertstate="firing", alertname=~"SgwGateway.*|SgwNats.*|SgwNotReady"}'
        )
        assert firing == []
    finally:
        await asyncio.to_thread(prom.stop)
        await server.drain_and_stop()

"""Build the Grafana dashboard JSON and keep the monitoring copies in step with the chart.

The canonical files live in the Helm chart, because Helm can only read files inside it:

- ``charts/stream-gateway/dashboards/stream-gateway.json`` (built here from the panel list below)
- ``charts/stream-gateway/files/alerts.yaml`` (hand-written; promtool-tested)

``deploy/monitoring/dashboards/`` and ``deploy/monitoring/alerts/`` hold byte-identical copies for
users without the chart. Run ``python deploy/monitoring/generate.py`` after editing either; with
``--check`` it changes nothing and exits 1 if a file is out of date (tests/monitoring runs it).
Queries may only use metric names from ``gateway/observability/metrics.py`` and the operator's
``sgw_operator_*`` names; tests/monitoring checks every expression.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "stream-gateway"
DASHBOARD_CHART = CHART / "dashboards" / "stream-gateway.json"
DASHBOARD_COPY = ROOT / "deploy" / "monitoring" / "dashboards" / "stream-gateway.json"
ALERTS_CHART = CHART / "files" / "alerts.yaml"
ALERTS_COPY = ROOT / "deploy" / "monitoring" / "alerts" / "stream-gateway.rules.yaml"

UID = "sgw-overview"
DS = {"type": "prometheus", "uid": "${datasource}"}
NS = 'namespace=~"$namespace"'
NR = f'{NS}, route=~"$route"'
RATE = "$__rate_interval"
POD = "{{instance}} {{pod}}"


@dataclass
class Panel:
    """One panel: a title, PromQL targets as (expr, legend), a width and the unit of its values."""

    title: str
    description: str
    targets: list[tuple[str, str]]
    width: int = 12
    height: int = 8
    unit: str = "short"
    kind: str = "timeseries"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    title: str
    panels: list[Panel]


def stat(title: str, description: str, expr: str, unit: str = "short", **extra: Any) -> Panel:
    return Panel(title, description, [(expr, "")], width=4, height=4, unit=unit, kind="stat", extra=extra)


ROWS: list[Row] = [
    Row(
        "Calls",
        [
            stat(
                "Live calls",
                "Streams open right now (a call with both tracks is one stream).",
                f"sum(sgw_streams_active{{{NR}}})",
            ),
            stat(
                "Calls started / min",
                "Streams accepted per minute (start received, route resolved).",
                f"sum(rate(sgw_streams_started_total{{{NR}}}[{RATE}])) * 60",
            ),
            stat(
                "Open WebSockets",
                "Sockets open, including those that have not sent start yet.",
                f"sum(sgw_ws_connections_active{{{NS}}})",
            ),
            stat(
                "Ready pods",
                "Gateway pods whose /readyz answers 200.",
                f"sum(sgw_ready{{{NS}}})",
            ),
            stat(
                "Pods without NATS",
                "Gateway pods whose NATS connection is down: their calls buffer, then drop audio.",
                f"count(sgw_nats_connected{{{NS}}} == 0) or vector(0)",
                thresholds=[(None, "green"), (1, "red")],
            ),
            stat(
                "Audio frames lost",
                "Frames dropped in the selected time range, all reasons.",
                f"sum(increase(sgw_frames_dropped_total{{{NR}}}[$__range])) or vector(0)",
                thresholds=[(None, "green"), (1, "orange")],
            ),
            Panel(
                "Live calls per route",
                "Open streams by StreamRoute.",
                [(f"sum by (route) (sgw_streams_active{{{NR}}})", "{{route}}")],
            ),
            Panel(
                "Calls started per minute by route",
                "Stream starts per minute by StreamRoute.",
                [(f"sum by (route) (rate(sgw_streams_started_total{{{NR}}}[{RATE}])) * 60", "{{route}}")],
            ),
            Panel(
                "Calls ended per minute by close code",
                "1000 normal, 1001 pod draining, 1008 policy (no route, bad token), 1009 too big, "
                "1011 internal error, 1013 try again later (backpressure).",
                [(f"sum by (code) (rate(sgw_streams_closed_total{{{NR}}}[{RATE}])) * 60", "{{code}}")],
            ),
            Panel(
                "Close codes and reasons in range",
                "How streams ended in the selected time range.",
                [(f"sum by (code, reason) (increase(sgw_streams_closed_total{{{NR}}}[$__range]))", "")],
                kind="table",
                extra={"instant": True},
            ),
        ],
    ),
    Row(
        "Audio",
        [
            Panel(
                "Frames per second by track",
                "Media frames received from providers and handed to NATS (20 ms frames: 50/s per track per call).",
                [
                    (f"sum by (track) (rate(sgw_frames_received_total{{{NR}}}[{RATE}]))", "received {{track}}"),
                    (f"sum by (track) (rate(sgw_frames_published_total{{{NR}}}[{RATE}]))", "published {{track}}"),
                ],
                unit="fps",
            ),
            Panel(
                "Publish latency (socket read to NATS)",
                "Quantiles of the time a frame waits between the WebSocket read and the NATS client.",
                [
                    (
                        f"histogram_quantile({q}, sum by (le) "
                        f"(rate(sgw_publish_latency_seconds_bucket{{{NR}}}[{RATE}])))",
                        f"p{int(q * 100)}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ],
                unit="s",
            ),
            Panel(
                "Frames dropped per second by reason",
                "backpressure: buffer full while NATS was slow or away; rejected: NATS refused; "
                "shutdown: still buffered when the drain ended.",
                [(f"sum by (reason) (rate(sgw_frames_dropped_total{{{NR}}}[{RATE}]))", "{{reason}}")],
                width=8,
                unit="fps",
            ),
            Panel(
                "Fullest stream buffer per pod",
                "sgw_buffer_fill_ratio_max: at 100% the overflow policy drops (or closes) audio.",
                [(f"max by (instance, pod) (sgw_buffer_fill_ratio_max{{{NS}}})", POD)],
                width=8,
                unit="percentunit",
                extra={"max": 1, "thresholds": [(None, "green"), (0.5, "orange"), (0.8, "red")]},
            ),
            Panel(
                "Frames waiting in buffers per pod",
                "All stream buffers of a pod together.",
                [(f"sum by (instance, pod) (sgw_buffer_frames{{{NS}}})", POD)],
                width=8,
            ),
            Panel(
                "Sequence anomalies per minute",
                "Gaps (frames the provider never sent), duplicates and reordering in the provider's media timestamps.",
                [
                    (
                        f"sum by (reason, track) (rate(sgw_sequence_anomalies_total{{{NR}}}[{RATE}])) * 60",
                        "{{reason}} {{track}}",
                    )
                ],
            ),
            Panel(
                "Audio bytes per second by track",
                "Decoded audio payload received.",
                [(f"sum by (track) (rate(sgw_audio_bytes_received_total{{{NR}}}[{RATE}]))", "{{track}}")],
                unit="Bps",
            ),
        ],
    ),
    Row(
        "Errors and security",
        [
            Panel(
                "Auth failures per minute",
                "Bearer-token checks that failed, by reason (missing, invalid). Tokens are never logged.",
                [(f"sum by (reason) (rate(sgw_auth_failures_total{{{NS}}}[{RATE}])) * 60", "{{reason}}")],
                width=8,
            ),
            Panel(
                "Protocol errors per minute",
                "Provider messages that broke the protocol, by reason.",
                [(f"sum by (reason) (rate(sgw_protocol_errors_total{{{NS}}}[{RATE}])) * 60", "{{reason}}")],
                width=8,
            ),
            Panel(
                "Upgrades refused per minute",
                "WebSocket upgrades refused before 101: unauthorized, stream_limit, draining...",
                [
                    (
                        f"sum by (reason) (rate(sgw_ws_upgrades_rejected_total{{{NS}}}[{RATE}])) * 60",
                        "{{reason}}",
                    )
                ],
                width=8,
            ),
            Panel(
                "Status callbacks per minute",
                "Provider stream status callbacks on /status, by provider and outcome.",
                [
                    (
                        f"sum by (provider, reason) (rate(sgw_status_callbacks_total{{{NS}}}[{RATE}])) * 60",
                        "{{provider}} {{reason}}",
                    )
                ],
                width=8,
            ),
            Panel(
                "Events published per minute by kind",
                "Lifecycle events on the events subjects (started, stopped, dtmf, mark, ...).",
                [(f"sum by (reason) (rate(sgw_events_published_total{{{NS}}}[{RATE}])) * 60", "{{reason}}")],
                width=8,
            ),
            Panel(
                "Messages ignored per minute",
                "Well-formed provider messages the gateway does not use, by kind.",
                [(f"sum by (reason) (rate(sgw_messages_ignored_total{{{NS}}}[{RATE}])) * 60", "{{reason}}")],
                width=8,
            ),
        ],
    ),
    Row(
        "NATS",
        [
            Panel(
                "NATS connection per pod",
                "1 connected, 0 disconnected (audio buffers, then drops).",
                [(f"max by (instance, pod) (sgw_nats_connected{{{NS}}})", POD)],
                kind="state-timeline",
                extra={"mappings": {"0": ("Disconnected", "red"), "1": ("Connected", "green")}},
            ),
            Panel(
                "Reconnects and resends",
                "NATS reconnections, and messages sent again because the server never confirmed them.",
                [
                    (
                        f"sum by (instance, pod) (increase(sgw_nats_reconnects_total{{{NS}}}[{RATE}]))",
                        "reconnects " + POD,
                    ),
                    (f"sum by (instance, pod) (increase(sgw_frames_resent_total{{{NS}}}[{RATE}]))", "resent " + POD),
                ],
                width=6,
            ),
            Panel(
                "Unconfirmed messages per pod",
                "Handed to NATS and not yet confirmed by a PING/PONG round trip.",
                [(f"max by (instance, pod) (sgw_nats_unconfirmed_messages{{{NS}}})", POD)],
                width=6,
            ),
        ],
    ),
    Row(
        "Capacity and back-pressure",
        [
            Panel(
                "Event-loop lag per pod",
                "Smoothed lateness of each worker's event loop. Over server.max_loop_lag (0.25 s) the "
                "worker refuses new streams with 503 (overloaded) so the load balancer tries another pod.",
                [(f"max by (instance, pod) (sgw_event_loop_lag_seconds{{{NS}}})", POD)],
                width=8,
                unit="s",
                extra={"thresholds": [(None, "green"), (0.1, "orange"), (0.25, "red")]},
            ),
            Panel(
                "Provider sockets paused by back-pressure",
                "1 while NATS is connected but not keeping up and the pod has stopped reading its "
                "provider sockets (nothing is lost while paused; past buffer.max_pause it reads again "
                "and the stream buffers take over). Pauses per minute alongside, and pauses of single "
                "streams whose durable route's acknowledgements lag, per route.",
                [
                    (f"max by (instance, pod) (sgw_backpressure_active{{{NS}}})", "paused " + POD),
                    (
                        f"sum by (instance, pod) (rate(sgw_backpressure_pauses_total{{{NS}}}[{RATE}])) * 60",
                        "pauses/min " + POD,
                    ),
                    (
                        f"sum by (route) (rate(sgw_stream_pauses_total{{{NS}}}[{RATE}])) * 60",
                        "stream pauses/min {{route}}",
                    ),
                ],
                width=8,
            ),
            Panel(
                "Worker processes up",
                "With --workers N (chart gateway.workers), each worker process of a pod: 1 up, 0 down "
                "(the supervisor restarts it). Restarts per hour alongside.",
                [
                    (f"sum by (instance, pod) (sgw_worker_up{{{NS}}})", "up " + POD),
                    (
                        f"sum by (instance, pod) (increase(sgw_worker_restarts_total{{{NS}}}[1h]))",
                        "restarts/h " + POD,
                    ),
                ],
                width=8,
            ),
        ],
    ),
    Row(
        "Pods and route table",
        [
            Panel(
                "Pods ready, draining, scraped",
                "Ready pods take calls; draining pods finish theirs after SIGTERM.",
                [
                    (f"sum(sgw_ready{{{NS}}})", "ready"),
                    (f"sum(sgw_draining{{{NS}}})", "draining"),
                    (f"count(sgw_ready{{{NS}}})", "scraped"),
                ],
                width=8,
            ),
            Panel(
                "Route table version per pod",
                "Every pod should converge on the operator's latest version within seconds.",
                [
                    (f"max by (instance, pod) (sgw_route_table_version{{{NS}}})", POD),
                    (f"max(sgw_operator_table_version{{{NS}}})", "operator"),
                ],
                width=8,
            ),
            Panel(
                "Routes in the table",
                "Routes per pod and as compiled by the operator.",
                [
                    (f"max by (instance, pod) (sgw_route_table_routes{{{NS}}})", POD),
                    (f"max(sgw_operator_routes{{{NS}}})", "operator"),
                ],
                width=8,
            ),
            Panel(
                "Route table updates per minute by outcome",
                "applied: a new table was swapped in; invalid: a table was refused and the old one kept.",
                [
                    (
                        f"sum by (reason) (rate(sgw_route_table_updates_total{{{NS}}}[{RATE}])) * 60",
                        "{{reason}}",
                    )
                ],
                width=8,
            ),
        ],
    ),
    Row(
        "Operator",
        [
            Panel(
                "Reconciles per minute by reason",
                "StreamRoute and Secret events the operator processed.",
                [
                    (
                        f"sum by (reason) (rate(sgw_operator_reconciles_total{{{NS}}}[{RATE}])) * 60",
                        "{{reason}}",
                    )
                ],
                width=8,
            ),
            Panel(
                "Reconcile errors per minute by reason",
                "Failed reconciles (retried by the operator).",
                [
                    (
                        f"sum by (reason) (rate(sgw_operator_reconcile_errors_total{{{NS}}}[{RATE}])) * 60",
                        "{{reason}}",
                    )
                ],
                width=8,
            ),
            Panel(
                "Table publishes per minute by outcome",
                "Writes of the compiled table to the NATS KV bucket.",
                [
                    (
                        f"sum by (reason) (rate(sgw_operator_table_publishes_total{{{NS}}}[{RATE}])) * 60",
                        "{{reason}}",
                    )
                ],
                width=8,
            ),
        ],
    ),
]


def _field_config(panel: Panel) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "fillOpacity": 10, "lineWidth": 1, "showPoints": "never"}
        defaults["min"] = 0
    if "max" in panel.extra:
        defaults["max"] = panel.extra["max"]
    steps = panel.extra.get("thresholds", [(None, "green")])
    defaults["thresholds"] = {
        "mode": "absolute",
        "steps": [{"color": color, "value": value} for value, color in steps],
    }
    if "thresholds" in panel.extra and panel.kind == "timeseries":
        defaults["custom"]["thresholdsStyle"] = {"mode": "line"}
    if "mappings" in panel.extra:
        defaults["mappings"] = [
            {
                "type": "value",
                "options": {
                    value: {"text": text, "color": color, "index": i}
                    for i, (value, (text, color)) in enumerate(panel.extra["mappings"].items())
                },
            }
        ]
        defaults["color"] = {"mode": "thresholds"}
    return {"defaults": defaults, "overrides": []}


def _options(panel: Panel) -> dict[str, Any]:
    if panel.kind == "stat":
        return {
            "colorMode": "value",
            "graphMode": "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        }
    if panel.kind == "table":
        return {"showHeader": True, "cellHeight": "sm"}
    legend = {"displayMode": "list", "placement": "bottom", "showLegend": True}
    if panel.kind == "state-timeline":
        return {"legend": legend, "showValue": "never", "mergeValues": True, "rowHeight": 0.9}
    return {"legend": legend, "tooltip": {"mode": "multi", "sort": "desc"}}


def _target(expr: str, legend: str, ref: int, panel: Panel) -> dict[str, Any]:
    target: dict[str, Any] = {"datasource": DS, "expr": expr, "refId": chr(ord("A") + ref)}
    if panel.extra.get("instant"):
        target.update({"instant": True, "range": False, "format": "table"})
    else:
        target.update({"range": True, "legendFormat": legend or "__auto"})
    return target


def _variables() -> list[dict[str, Any]]:
    def query_var(name: str, label: str, query: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DS,
            "definition": query,
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
            "refresh": 2,
            "includeAll": True,
            "allValue": ".*",
            "multi": True,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [],
            "regex": "",
            "sort": 1,
            "hide": 0,
            "skipUrlSync": False,
        }

    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "options": [],
            "refresh": 1,
            "regex": "",
            "includeAll": False,
            "multi": False,
            "hide": 0,
            "skipUrlSync": False,
        },
        query_var("namespace", "Namespace", "label_values(sgw_ready, namespace)"),
        query_var("route", "Route", f"label_values(sgw_streams_active{{{NS}}}, route)"),
    ]


def build_dashboard() -> dict[str, Any]:
    """The dashboard as a Grafana 10+ JSON model, laid out on the 24-column grid."""
    panels: list[dict[str, Any]] = []
    next_id = 1
    y = 0
    for row in ROWS:
        panels.append(
            {
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "id": next_id,
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, line_height = 0, y + line_height, 0
            panels.append(
                {
                    "type": panel.kind,
                    "title": panel.title,
                    "description": panel.description,
                    "datasource": DS,
                    "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
                    "id": next_id,
                    "targets": [_target(e, lg, i, panel) for i, (e, lg) in enumerate(panel.targets)],
                    "fieldConfig": _field_config(panel),
                    "options": _options(panel),
                }
            )
            next_id += 1
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": "stream-gateway: live calls, audio flow, NATS, route table and operator.",
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["stream-gateway", "telephony", "nats"],
        "templating": {"list": _variables()},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": "stream-gateway",
        "uid": UID,
        "version": 1,
        "weekStart": "",
    }


def render_dashboard() -> str:
    return json.dumps(build_dashboard(), indent=2) + "\n"


def expected_files() -> dict[Path, str]:
    """Every generated or copied file and the text it must have."""
    dashboard = render_dashboard()
    alerts = ALERTS_CHART.read_text()
    return {DASHBOARD_CHART: dashboard, DASHBOARD_COPY: dashboard, ALERTS_COPY: alerts}


def stale_files() -> list[Path]:
    return [p for p, text in expected_files().items() if not p.is_file() or p.read_text() != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale files, change nothing")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files()
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)}", file=sys.stderr)
        return 1 if stale else 0
    for path, text in expected_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Grafana dashboard: generated, identical in the chart and deploy/monitoring, well formed."""

from __future__ import annotations

import json

import pytest

from tests.monitoring.sources import DASHBOARD, DASHBOARD_COPY, dashboard, load_generator, panels

pytestmark = pytest.mark.timeout(60)


def test_committed_files_are_what_the_generator_builds() -> None:
    generate = load_generator()
    stale = generate.stale_files()
    assert stale == [], f"run `python deploy/monitoring/generate.py`; out of date: {stale}"
    assert generate.main(["--check"]) == 0


def test_the_two_copies_are_identical() -> None:
    assert DASHBOARD.read_bytes() == DASHBOARD_COPY.read_bytes()


def test_identity_and_variables() -> None:
    board = dashboard()
    assert board["uid"] == "sgw-overview"
    assert board["schemaVersion"] >= 36, "Grafana 10+ JSON model"
    assert board["id"] is None
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    route = variables["route"]
    assert route["type"] == "query"
    assert route["query"]["query"].startswith("label_values(sgw_streams_active")
    assert route["query"]["query"].endswith(", route)")
    assert route["includeAll"]
    assert route["multi"]


def test_panels_are_well_formed() -> None:
    board = dashboard()
    all_panels = panels(board)
    ids = [p["id"] for p in all_panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    for panel in all_panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {(pos["x"] + dx, pos["y"] + dy) for dx in range(pos["w"]) for dy in range(pos["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        if panel["type"] == "row":
            continue
        assert panel["title"], panel
        assert panel.get("description"), panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"].strip()
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))


def test_panels_speak_in_calls() -> None:
    exprs = " ".join(t["expr"] for p in panels(dashboard()) for t in p.get("targets", []))
    for metric in (
        "sgw_streams_active",
        "sgw_streams_started_total",
        "sgw_streams_closed_total",
        "sgw_frames_received_total",
        "sgw_publish_latency_seconds_bucket",
        "sgw_buffer_fill_ratio_max",
        "sgw_buffer_frames",
        "sgw_frames_dropped_total",
        "sgw_sequence_anomalies_total",
        "sgw_auth_failures_total",
        "sgw_protocol_errors_total",
        "sgw_nats_connected",
        "sgw_nats_reconnects_total",
        "sgw_frames_resent_total",
        "sgw_route_table_version",
        "sgw_operator_reconcile_errors_total",
        "sgw_operator_table_publishes_total",
    ):
        assert metric in exprs, f"no panel shows {metric}"
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}," in exprs


def test_json_is_stable_text() -> None:
    text = DASHBOARD.read_text()
    assert text.endswith("}\n")
    assert json.dumps(json.loads(text), indent=2) + "\n" == text

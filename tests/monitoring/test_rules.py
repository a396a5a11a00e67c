"""The alert rules: promtool-valid, unit-tested (every alert fires and stays quiet in some test),
documented (summary, description, runbook section) and identical in the chart and deploy/."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.monitoring.promtools import run_promtool
from tests.monitoring.sources import ALERTS, ALERTS_COPY, RULE_TESTS, alert_rules, runbook_anchors

pytestmark = pytest.mark.timeout(120)

SEVERITIES = {"critical", "warning", "info"}


@pytest.mark.parametrize("path", [ALERTS, ALERTS_COPY], ids=["chart", "deploy"])
def test_promtool_check_rules(path: Path) -> None:
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules(path))} rules found" in result.stdout


def test_promtool_test_rules() -> None:
    assert RULE_TESTS, "deploy/monitoring/tests/*.yaml is empty"
    result = run_promtool("test", "rules", *map(str, RULE_TESTS), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_TESTS), result.stdout


def test_the_two_copies_are_identical() -> None:
    assert ALERTS.read_bytes() == ALERTS_COPY.read_bytes(), "run `python deploy/monitoring/generate.py`"


def test_rule_group_and_annotations() -> None:
    doc = yaml.safe_load(ALERTS.read_text())
    assert [g["name"] for g in doc["groups"]] == ["stream-gateway"]
    anchors = runbook_anchors()
    names = []
    for rule in alert_rules():
        name = rule["alert"]
        names.append(name)
        assert name.startswith("Sgw"), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        url = annotations["runbook_url"]
        assert url == f"deploy/monitoring/runbook.md#{name.lower()}", name
        assert url.split("#", 1)[1] in anchors, f"runbook.md has no section for {name}"
    assert len(names) == len(set(names))
    assert {
        "SgwGatewayDown", "SgwNotReady", "SgwNatsDisconnected", "SgwFramesDropped", "SgwPublishLatencyHigh",
        "SgwBufferNearlyFull", "SgwAuthFailuresSpike", "SgwProtocolErrorsHigh", "SgwOperatorReconcileErrors",
        "SgwOperatorTablePublishFailing",
    } <= set(names)  # fmt: skip


def test_every_alert_is_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        doc = yaml.safe_load(path.read_text())
        assert doc["rule_files"] == ["../alerts/stream-gateway.rules.yaml"], path
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested staying quiet"
    assert (firing | quiet) - names == set(), "tests for alerts that do not exist"


def test_runbook_has_one_section_per_alert() -> None:
    sections = {a for a in runbook_anchors() if a.startswith("sgw")}
    assert sections == {rule["alert"].lower() for rule in alert_rules()}

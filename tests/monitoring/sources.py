"""Where the monitoring artefacts live and how to read every query out of them."""

from __future__ import annotations

import functools
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
CHART = ROOT / "charts" / "stream-gateway"
DASHBOARD = CHART / "dashboards" / "stream-gateway.json"
DASHBOARD_COPY = MONITORING / "dashboards" / "stream-gateway.json"
ALERTS = CHART / "files" / "alerts.yaml"
ALERTS_COPY = MONITORING / "alerts" / "stream-gateway.rules.yaml"
RUNBOOK = MONITORING / "runbook.md"
RULE_TESTS = sorted((MONITORING / "tests").glob("*.yaml"))


@functools.cache
def load_generator() -> ModuleType:
    """deploy/monitoring/generate.py (a script, not a package), imported by path."""
    name = "sgw_monitoring_generate"
    spec = importlib.util.spec_from_file_location(name, MONITORING / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


def dashboard_queries(board: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the panels and of the query variables."""
    exprs = [t["expr"] for p in panels(board) for t in p.get("targets", []) if "expr" in t]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def alert_rules(path: Path = ALERTS) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def runbook_anchors() -> set[str]:
    """GitHub-style anchors of the runbook's headings."""
    anchors = set()
    for line in RUNBOOK.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add("".join(ch for ch in title.replace(" ", "-") if ch.isalnum() or ch in "-_"))
    return anchors

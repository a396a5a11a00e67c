"""helm lint --strict on every scenario, and bad values refused before anything reaches a cluster:
by values.schema.json (lint and template), or by the chart's own cross-value checks (template)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.helm import CHART, CI_VALUES, Helm

pytestmark = pytest.mark.timeout(120)

SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def test_there_are_ci_scenarios() -> None:
    names = {p.name for p in CI_VALUES}
    assert {"minimal-values.yaml", "full-values.yaml", "namespaced-operator-values.yaml"} <= names


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["defaults", *(p.stem for p in CI_VALUES)])
def test_helm_lint_strict(helm: Helm, values: Path | None) -> None:
    result = helm.lint([values] if values else [])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout, result.stdout
    assert "[ERROR]" not in result.stdout, result.stdout
    # lint only logs a template `fail`; the render must really succeed too.
    assert "funcMap fail" not in result.stderr, result.stderr


SCHEMA_VIOLATIONS: dict[str, tuple[dict[str, str], dict[str, str], str]] = {
    "nats.url missing": ({"nats.url": "null"}, {}, "url"),
    "nats.url empty": ({}, {"nats.url": ""}, "nats.url"),
    "nats.url not a NATS URL": ({}, {"nats.url": "http://nats:4222"}, "nats.url"),
    "replicas not a number": ({}, {"gateway.replicas": "two"}, "gateway.replicas"),
    "unknown top-level key": ({"gatway.replicas": "3"}, {}, "gatway"),
    "unknown nested key": ({"gateway.replica": "3"}, {}, "replica"),
    "negative drain": ({"gateway.drainSeconds": "-1"}, {}, "gateway.drainSeconds"),
    "bad log level": ({}, {"gateway.logLevel": "TRACE"}, "gateway.logLevel"),
    "bad service type": ({}, {"service.type": "ExternalName"}, "service.type"),
    "bad port": ({"gateway.ports.ws": "70000"}, {}, "gateway.ports.ws"),
    "negative workers": ({"gateway.workers": "-1"}, {}, "gateway.workers"),
    "workers not a number": ({}, {"gateway.workers": "auto"}, "gateway.workers"),
    "bad kv bucket": ({}, {"routing.kvBucket": "routes.table"}, "routing.kvBucket"),
    "bad runbook base": ({}, {"prometheusRule.runbookBaseUrl": "git.example.com"}, "runbookBaseUrl"),
}


@pytest.mark.parametrize(
    ("set_values", "set_string", "mentions"), SCHEMA_VIOLATIONS.values(), ids=SCHEMA_VIOLATIONS.keys()
)
def test_schema_refuses_bad_values(
    helm: Helm, set_values: dict[str, str], set_string: dict[str, str], mentions: str
) -> None:
    lint = helm.lint(set_values=set_values, set_string=set_string)
    assert lint.returncode != 0, "helm lint --strict accepted bad values"
    field = mentions.rsplit(".", maxsplit=1)[-1]
    assert "[ERROR] values.yaml" in lint.stdout, lint.stdout
    assert field in lint.stdout, lint.stdout
    error = helm.render_error(set_values=set_values, set_string=set_string)
    assert "schema" in error, error
    assert field in error, error


CROSS_VALUE_VIOLATIONS: dict[str, tuple[dict[str, str], str]] = {
    "grace period shorter than preStop + drain + margin": (
        {"gateway.terminationGracePeriodSeconds": "40"},
        "must be at least gateway.preStopSeconds + gateway.drainSeconds + gateway.shutdownMarginSeconds = 50",
    ),
    "CPU autoscaling without a CPU request": ({"autoscaling.enabled": "true"}, "needs gateway.resources.requests.cpu"),
    "autoscaling without any target": (
        {"autoscaling.enabled": "true", "autoscaling.targetCPUUtilizationPercentage": "null"},
        "needs a target",
    ),
    "streams per pod at the per-pod limit": (
        {
            "autoscaling.enabled": "true",
            "autoscaling.targetCPUUtilizationPercentage": "null",
            "autoscaling.streamsPerPod": "2000",
            "gateway.maxStreams": "2000",
        },
        "streamsPerPod must be below gateway.maxStreams",
    ),
    "a chart-managed setting in gateway.settings": (
        {"gateway.settings.shutdown.drain_seconds": "5"},
        "SGW_SHUTDOWN__DRAIN_SECONDS is set by the chart",
    ),
    "workers in gateway.settings": (
        {"gateway.settings.server.workers": "2"},
        "SGW_SERVER__WORKERS is set by the chart",
    ),
    "same port twice": ({"gateway.ports.metrics": "8080"}, "must differ"),
    "NATS secret without keys": ({"nats.auth.existingSecret": "nats"}, "none of userKey"),
    "user without password": ({"nats.auth.existingSecret": "nats", "nats.auth.userKey": "u"}, "go together"),
}


@pytest.mark.parametrize(("set_values", "message"), CROSS_VALUE_VIOLATIONS.values(), ids=CROSS_VALUE_VIOLATIONS.keys())
def test_chart_refuses_inconsistent_values(helm: Helm, set_values: dict[str, str], message: str) -> None:
    assert message in helm.render_error(set_values=set_values)


# ---- values.yaml and values.schema.json themselves ----------------------------------------


def test_values_yaml_points_at_its_schema() -> None:
    first = (CHART / "values.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=values.schema.json"


@pytest.mark.parametrize("path", [CHART / "values.yaml", *CI_VALUES], ids=lambda p: p.name)
def test_values_files_satisfy_the_schema(path: Path) -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    merged = _merge(defaults, yaml.safe_load(path.read_text()) or {})
    jsonschema.Draft7Validator(SCHEMA).validate(merged)


def _merge(base: Any, override: Any) -> Any:
    """Helm's coalescing, near enough: maps merge, null deletes, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = _merge(base.get(key), value)
        return out
    return override


def test_schema_describes_every_key_and_closes_every_object() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    problems: list[str] = []

    def visit(node: dict[str, Any], path: str) -> None:
        if "properties" in node:
            if node.get("additionalProperties") is not False:
                problems.append(f"{path or '<root>'}: additionalProperties must be false")
            for name, prop in node["properties"].items():
                where = f"{path}.{name}" if path else name
                if not prop.get("description"):
                    problems.append(f"{where}: no description")
                visit(prop, where)

    visit(SCHEMA, "")
    assert problems == []
    assert "url" in SCHEMA["properties"]["nats"]["required"]
    assert SCHEMA["properties"]["nats"]["properties"]["url"]["minLength"] == 1


def test_every_values_key_is_in_the_schema_and_back() -> None:
    """values.yaml documents every key the schema allows (free-form maps aside)."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    missing: list[str] = []

    def visit(node: dict[str, Any], values: Any, path: str) -> None:
        for name, prop in node.get("properties", {}).items():
            where = f"{path}.{name}" if path else name
            if name == "global":
                continue
            if not isinstance(values, dict) or name not in values:
                missing.append(where)
            elif "properties" in prop:
                visit(prop, values[name], where)

    visit(SCHEMA, defaults, "")
    assert missing == []

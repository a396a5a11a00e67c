"""Every StreamRoute in deploy/examples/ is valid for the CRD (as kubectl/the API server see it)
and for the operator (parse_streamroute), and the examples together compile without conflicts."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from sgw_operator.model import evaluate, secret_state, snapshot
from sgw_routes.manifest import KIND, parse_streamroute
from tests.chart.crdschema import CRD_PATH, apply_defaults, errors, openapi_schema, unknown_fields

EXAMPLES = Path(__file__).resolve().parents[3] / "deploy" / "examples"


def documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found.append((path.name, doc))
    return found


ROUTES = [(name, doc) for name, doc in documents() if doc.get("kind") == KIND]


def test_the_examples_exist() -> None:
    assert CRD_PATH.is_file()
    names = {doc["metadata"]["name"] for _, doc in ROUTES}
    assert {"transcription", "analytics-both-tracks", "catch-all"} <= names


@pytest.mark.parametrize(("path", "doc"), ROUTES, ids=[name for name, _ in ROUTES])
def test_example_is_valid_for_the_crd_and_the_operator(path: str, doc: dict[str, Any]) -> None:
    schema = openapi_schema()
    assert errors(doc, schema) == []
    assert unknown_fields(doc, schema) == []
    # Namespace-less on purpose: `kubectl apply -n <ns> -f` puts them where the user wants.
    assert "namespace" not in doc["metadata"]
    parse_streamroute(doc)
    parse_streamroute(apply_defaults(doc, schema))


def test_examples_compile_together_without_conflicts() -> None:
    secrets = {
        ("default", doc["metadata"]["name"]): secret_state(
            {"data": {k: base64.b64encode(v.encode()).decode() for k, v in doc["stringData"].items()}}
        )
        for _, doc in documents()
        if doc.get("kind") == "Secret"
    }
    result = evaluate([snapshot(apply_defaults(doc, openapi_schema())) for _, doc in ROUTES], secrets)
    assert {key: o.reason for key, o in result.outcomes.items()} == {
        f"default/{doc['metadata']['name']}": "Accepted" for _, doc in ROUTES
    }
    assert result.table.routes[-1].name == "default/catch-all"
    by_name = {r.name: r for r in result.table.routes}
    assert by_name["default/transcription"].token_sha256 is not None

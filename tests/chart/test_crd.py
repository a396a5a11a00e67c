"""The StreamRoute CRD the chart ships: names, columns, a structural schema, and validation that
agrees with the shared route model (sgw_routes) on what a valid route is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sgw_routes.manifest import (
    API_GROUP,
    API_VERSION,
    COPY_FIELDS,
    KIND,
    SPEC_FIELDS,
    FieldTree,
    InvalidRoute,
    parse_streamroute,
)
from sgw_routes.subjects import DEFAULT_AUDIO_SUBJECT, DEFAULT_EVENTS_SUBJECT, TEMPLATE_PATTERN
from tests.chart.crdschema import apply_defaults, errors, load_crd, openapi_schema, unknown_fields, walk

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
SUBJECT_FIELDS = ("spec.target.subject", "spec.target.eventsSubject", "spec.playback.subject")


def model_leaves(tree: FieldTree, where: str = "spec") -> set[str]:
    found: set[str] = set()
    for name, sub in tree.items():
        found |= {f"{where}.{name}"} if sub is None else model_leaves(sub, f"{where}.{name}")
    return found


MODEL_FIELDS = model_leaves(SPEC_FIELDS) | model_leaves(COPY_FIELDS, "spec.target.copies[]")
"""The leaves of sgw_routes.manifest.SPEC_FIELDS, the fields the gateway and operator understand:
the schema must declare exactly these (a field only the schema knows would be refused by the
operator; one only the model knows could not be applied)."""


def route(spec: dict[str, Any] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "r", "namespace": "voice", **meta},
        "spec": {} if spec is None else spec,
    }


def sub(path: str) -> dict[str, Any]:
    node = openapi_schema()
    for part in path.split("."):
        node = node["properties"][part]
    return node


# ---- names, versions, columns --------------------------------------------------------------


def test_crd_identity() -> None:
    crd = load_crd()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"streamroutes.{API_GROUP}"
    assert spec["group"] == API_GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == KIND
    assert spec["names"]["plural"] == "streamroutes"
    assert spec["names"]["shortNames"] == ["sr"]
    assert spec["names"]["categories"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert API_VERSION.endswith("/" + version["name"])
    assert version["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    (version,) = load_crd()["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert columns["Pattern"]["jsonPath"] == ".spec.match.controlId"
    assert columns["Subject"]["jsonPath"] == ".spec.target.subject"
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert columns["Age"] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def test_crd_is_a_valid_kubernetes_object() -> None:
    for version in ("1.28.0", "1.35.0"):
        kubernetes_validate.validate(load_crd(), version, strict=True)


# ---- structural schema --------------------------------------------------------------------


def test_schema_is_structural_and_documented() -> None:
    problems = []
    for path, node in walk(openapi_schema()):
        if path != "<root>" and not node.get("description") and path not in {"apiVersion", "kind"}:
            problems.append(f"{path}: no description")
        if "type" not in node:
            problems.append(f"{path}: no type (structural schemas need one everywhere)")
        for banned in ("$ref", "uniqueItems", "additionalItems", "patternProperties", "definitions"):
            if banned in node:
                problems.append(f"{path}: {banned} is not allowed in a CRD schema")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties are mutually exclusive")
        if node.get("x-kubernetes-validations") and node.get("type") == "string" and "maxLength" not in node:
            problems.append(f"{path}: CEL on an unbounded string exceeds the cost budget")
    assert problems == []


def test_schema_has_exactly_the_documented_spec_fields() -> None:
    leaves = {
        path
        for path, node in walk(openapi_schema())
        if path.startswith("spec.") and node.get("type") != "object" or path == "spec.match.customParameters"
    }
    leaves = {p for p in leaves if not p.endswith(("[]", "{}"))}
    assert leaves == MODEL_FIELDS


def test_subject_patterns_are_the_route_model_pattern() -> None:
    for field in SUBJECT_FIELDS:
        node = sub(field)
        assert node["type"] == "string"
        assert node["pattern"] == TEMPLATE_PATTERN, field


def test_defaults_match_the_route_model() -> None:
    defaulted = apply_defaults(route({}), openapi_schema())
    assert defaulted["spec"] == {
        "match": {"controlId": "*"},
        "priority": 0,
        "target": {"subject": DEFAULT_AUDIO_SUBJECT, "eventsSubject": DEFAULT_EVENTS_SUBJECT},
    }
    parsed = parse_streamroute(defaulted)
    assert (parsed.control_id, parsed.subject, parsed.events_subject, parsed.priority) == (
        "*",
        DEFAULT_AUDIO_SUBJECT,
        DEFAULT_EVENTS_SUBJECT,
        0,
    )
    with_auth = apply_defaults(route({"auth": {"bearerTokenSecretRef": {"name": "tok"}}}), openapi_schema())
    assert with_auth["spec"]["auth"]["bearerTokenSecretRef"] == {"name": "tok", "key": "token"}
    twilio = {"auth": {"twilioSignature": {"authTokenSecretRef": {"name": "tw"}}, "basicAuthSecretRef": {"name": "b"}}}
    defaulted_auth = apply_defaults(route(twilio), openapi_schema())["spec"]["auth"]
    assert defaulted_auth["twilioSignature"]["authTokenSecretRef"] == {"name": "tw", "key": "token"}
    assert defaulted_auth["basicAuthSecretRef"] == {"name": "b"}
    parsed_auth = parse_streamroute(apply_defaults(route(twilio), openapi_schema()))
    assert parsed_auth.twilio_ref is not None and parsed_auth.twilio_ref.key == "token"
    for path, node in walk(openapi_schema()):
        if "default" in node:
            assert errors(node["default"], node) == [], f"default of {path} violates its own schema"


# ---- sample routes ------------------------------------------------------------------------

FULL_SPEC: dict[str, Any] = {
    "match": {
        "controlId": "sales-[0-9]*",
        "tracks": ["inbound", "outbound"],
        "customParameters": {"tenant": "acme", "lang": "en"},
    },
    "priority": 10,
    "target": {
        "subject": "tenant.acme.{route}.{call_id}.{track}",
        "eventsSubject": "tenant.acme.events.{call_id}",
        "jetstream": {"stream": "CALL_AUDIO-1"},
    },
    "auth": {
        "bearerTokenSecretRef": {"name": "acme-stream-token", "key": "bearer.token"},
        "basicAuthSecretRef": {"name": "acme-exotel-auth"},
        "twilioSignature": {"authTokenSecretRef": {"name": "acme-twilio", "key": "authToken"}},
    },
    "playback": {"subject": "play.{call_id}"},
}

VALID: dict[str, dict[str, Any]] = {
    "empty spec (catch-all)": {},
    "every field": FULL_SPEC,
    "one track": {"match": {"tracks": ["inbound"]}},
    "every placeholder": {"target": {"subject": "{call_id}.{stream_id}.{control_id}.{track}.{route}.{account_id}"}},
    "mixed literal and placeholder token": {"target": {"subject": "a-{call_id}_x.b"}},
    "negative priority": {"priority": -5},
    "max int32 priority": {"priority": 2147483647},
    "basic auth only": {"auth": {"basicAuthSecretRef": {"name": "jambonz-ws-auth"}}},
    "twilio signature only": {"auth": {"twilioSignature": {"authTokenSecretRef": {"name": "twilio"}}}},
    "empty auth (open)": {"auth": {}},
}

INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "wildcard token *": ({"target": {"subject": "audio.*.{track}"}}, "spec.target.subject"),
    "full wildcard >": ({"target": {"subject": "audio.>"}}, "spec.target.subject"),
    "empty token": ({"target": {"subject": "audio..{track}"}}, "spec.target.subject"),
    "leading dot": ({"target": {"subject": ".audio"}}, "spec.target.subject"),
    "trailing dot": ({"target": {"subject": "audio."}}, "spec.target.subject"),
    "space": ({"target": {"subject": "audio {call_id}"}}, "spec.target.subject"),
    "unknown placeholder": ({"target": {"subject": "audio.{callid}"}}, "spec.target.subject"),
    "unclosed placeholder": ({"target": {"subject": "audio.{call_id"}}, "spec.target.subject"),
    "empty subject": ({"target": {"subject": ""}}, "spec.target.subject"),
    "events wildcard": ({"target": {"eventsSubject": "events.*"}}, "spec.target.eventsSubject"),
    "events per track": ({"target": {"eventsSubject": "events.{call_id}.{track}"}}, "spec.target.eventsSubject"),
    "playback wildcard": ({"playback": {"subject": "play.>"}}, "spec.playback.subject"),
    "playback per track": ({"playback": {"subject": "play.{track}"}}, "spec.playback.subject"),
    "playback without subject": ({"playback": {}}, "spec.playback"),
    "bad track": ({"match": {"tracks": ["inbound_track"]}}, "spec.match.tracks.0"),
    "three tracks": ({"match": {"tracks": ["inbound", "outbound", "inbound"]}}, "spec.match.tracks"),
    "duplicate track": ({"match": {"tracks": ["inbound", "inbound"]}}, "spec.match.tracks"),
    "empty controlId": ({"match": {"controlId": ""}}, "spec.match.controlId"),
    "controlId too long": ({"match": {"controlId": "x" * 257}}, "spec.match.controlId"),
    "non-string parameter": ({"match": {"customParameters": {"n": 1}}}, "spec.match.customParameters.n"),
    "priority out of int32": ({"priority": 2147483648}, "spec.priority"),
    "priority not an integer": ({"priority": "high"}, "spec.priority"),
    "stream name with dot": ({"target": {"jetstream": {"stream": "a.b"}}}, "spec.target.jetstream.stream"),
    "jetstream without stream": ({"target": {"jetstream": {}}}, "spec.target.jetstream"),
    "secret ref without name": ({"auth": {"bearerTokenSecretRef": {"key": "t"}}}, "spec.auth.bearerTokenSecretRef"),
    "secret name not DNS": (
        {"auth": {"bearerTokenSecretRef": {"name": "Bad_Name"}}},
        "spec.auth.bearerTokenSecretRef.name",
    ),
    "basic-auth ref without name": ({"auth": {"basicAuthSecretRef": {}}}, "spec.auth.basicAuthSecretRef"),
    "basic-auth secret name not DNS": (
        {"auth": {"basicAuthSecretRef": {"name": "../up"}}},
        "spec.auth.basicAuthSecretRef.name",
    ),
    "twilio without token ref": ({"auth": {"twilioSignature": {}}}, "spec.auth.twilioSignature"),
    "twilio token ref without name": (
        {"auth": {"twilioSignature": {"authTokenSecretRef": {"key": "t"}}}},
        "spec.auth.twilioSignature.authTokenSecretRef",
    ),
    "twilio token key with a slash": (
        {"auth": {"twilioSignature": {"authTokenSecretRef": {"name": "tw", "key": "a/b"}}}},
        "spec.auth.twilioSignature.authTokenSecretRef.key",
    ),
    "auth not an object": ({"auth": "bearer"}, "spec.auth"),
}
"""Each: (spec, the field the schema blames)."""

MODEL_ALSO_REJECTS = {
    name for name, (_, where) in INVALID.items() if where.startswith(SUBJECT_FIELDS) or "controlId" in where
} - {"empty subject"} | {
    "bad track",
    "duplicate track",
    "stream name with dot",
    "priority out of int32",
    "secret ref without name",
    "basic-auth ref without name",
    "basic-auth secret name not DNS",
    "twilio without token ref",
    "twilio token ref without name",
    "twilio token key with a slash",
    "auth not an object",
}
"""Cases sgw_routes.manifest must refuse too (file mode reads routes without an API server).
An empty subject is the one difference: the model reads ``subject: ""`` as "use the default"."""


@pytest.mark.parametrize("spec", VALID.values(), ids=VALID.keys())
def test_valid_routes_pass_the_schema_and_the_model(spec: dict[str, Any]) -> None:
    obj = route(spec)
    assert errors(obj) == []
    assert unknown_fields(obj, openapi_schema()) == []
    parse_streamroute(apply_defaults(obj, openapi_schema()))


@pytest.mark.parametrize(("spec", "where"), INVALID.values(), ids=INVALID.keys())
def test_invalid_routes_are_rejected_by_the_schema(spec: dict[str, Any], where: str) -> None:
    found = errors(route(spec))
    assert found, "the schema accepted an invalid route"
    assert any(e.startswith(where + ":") for e in found), found


@pytest.mark.parametrize("name", sorted(MODEL_ALSO_REJECTS))
def test_the_route_model_agrees_with_the_schema(name: str) -> None:
    spec, _ = INVALID[name]
    with pytest.raises(InvalidRoute):
        parse_streamroute(route(spec))


def test_misspelled_fields_are_unknown_to_the_schema() -> None:
    obj = route({"match": {"controlID": "x"}, "target": {"subjects": "a.b"}, "prio": 1})
    assert sorted(unknown_fields(obj, openapi_schema())) == [
        "spec.match.controlID",
        "spec.prio",
        "spec.target.subjects",
    ]
    with pytest.raises(InvalidRoute) as info:  # what slips past (a newer CRD, no strict validation)
        parse_streamroute(obj)
    assert info.value.reason == "UnknownField"


@pytest.mark.parametrize(
    "auth",
    [
        {"oauth2": {"issuer": "https://idp"}},
        {"bearerTokenSecretRef": {"name": "t", "namespace": "elsewhere"}},
        {"basicAuthSecretRef": {"name": "b", "usernameKey": "user"}},
        {"twilioSignature": {"authTokenSecretRef": {"name": "t"}, "publicUrl": "wss://x"}},
        {"twilioSignature": {"authTokenSecretRef": {"name": "t", "optional": True}}},
    ],
)
def test_unknown_auth_fields_are_kept_for_the_operator_to_refuse(auth: dict[str, Any]) -> None:
    """Pruning an auth field would serve the route with less authentication than written, so the
    schema keeps unknown keys under spec.auth (the API server neither prunes nor rejects them) and
    the route model refuses the route (the operator reports Accepted=False, UnknownField)."""
    obj = route({"auth": auth})
    assert errors(obj) == []
    assert unknown_fields(obj, openapi_schema()) == []
    with pytest.raises(InvalidRoute) as info:
        parse_streamroute(apply_defaults(obj, openapi_schema()))
    assert info.value.reason == "UnknownField"


def test_only_the_auth_subtree_keeps_unknown_fields() -> None:
    keeps = {path for path, node in walk(openapi_schema()) if node.get("x-kubernetes-preserve-unknown-fields")}
    assert keeps == {
        "spec.auth",
        "spec.auth.bearerTokenSecretRef",
        "spec.auth.basicAuthSecretRef",
        "spec.auth.twilioSignature",
        "spec.auth.twilioSignature.authTokenSecretRef",
        "status.kopf",
    }


def test_status_shape() -> None:
    status = {
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Published",
                "message": "in table version 7",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
                "observedGeneration": 3,
            },
            {"type": "Accepted", "status": "False", "reason": "Conflicted", "message": "voice/other wins"},
        ],
        "table": {"version": 7},
        "kopf": {"progress": {"anything": {"retries": 1}}},
    }
    obj = {**route(FULL_SPEC), "status": status}
    assert errors(obj) == []
    assert unknown_fields(obj, openapi_schema()) == []
    bad = {**route(), "status": {"conditions": [{"type": "Ready", "status": "Yes"}]}}
    assert any("conditions.0.status" in e for e in errors(bad))
    twice = {**route(), "status": {"conditions": [{"type": "Ready", "status": "True"}] * 2}}
    assert any("list-type=map" in e for e in errors(twice))


def test_streamroutes_shipped_in_the_repository_are_valid() -> None:
    """Examples and docs StreamRoutes (if any exist) pass the schema and the model."""
    checked = 0
    for path in sorted((ROOT / "deploy").rglob("*.y*ml")) + sorted(ROOT.glob("*.md")):
        if path.suffix == ".md":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == KIND:
                assert errors(doc) == [], path
                assert unknown_fields(doc, openapi_schema()) == [], path
                parse_streamroute(apply_defaults(doc, openapi_schema()))
                checked += 1
    assert checked >= 0

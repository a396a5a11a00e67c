"""The shared route model: templates, manifests, precedence, conflicts, table wire form."""

from __future__ import annotations

import re
from typing import Any

import pytest

from sgw_routes.compile import RouteSecrets, compile_table, to_route
from sgw_routes.credentials import hash_basic, twilio_key
from sgw_routes.manifest import SPEC_FIELDS, InvalidRoute, parse_streamroute
from sgw_routes.model import (
    NO_BEARER_TOKEN,
    RoutingTable,
    decode_table,
    default_route,
    encode_table,
    hash_token,
    specificity,
)
from sgw_routes.subjects import TemplateError, render, sanitize_token, validate_template


def sr(
    name: str, spec: dict[str, Any] | None = None, created: str = "2026-01-01T00:00:00Z", ns: str = "default"
) -> dict[str, Any]:
    return {
        "apiVersion": "streamgateway.io/v1alpha1",
        "kind": "StreamRoute",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
        "spec": spec or {},
    }


@pytest.mark.parametrize(
    "template", ["audio.{call_id}.{track}", "a", "x-y.z_1.{route}{track}", "t.{account_id}.{stream_id}"]
)
def test_valid_templates(template: str) -> None:
    assert validate_template(template) == template


@pytest.mark.parametrize("template", ["", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a.{nope}", "a.{call_id", "a/b"])
def test_invalid_templates(template: str) -> None:
    with pytest.raises(TemplateError):
        validate_template(template)


def test_sanitize_and_render() -> None:
    assert sanitize_token("") == "_"
    assert sanitize_token("a.b*c>d e\tf") == "a_b_c_d_e_f"
    assert sanitize_token("v3:Md-I9_x+=@") == "v3:Md-I9_x+=@"
    assert len(sanitize_token("x" * 500)) == 128
    assert render("audio.{call_id}.{track}", {"call_id": "a.b", "track": "inbound"}) == "audio.a_b.inbound"


def test_specificity_counts_literal_characters() -> None:
    assert specificity("*") == 0
    assert specificity("sales-*") == 6
    assert specificity("sales-[ab]?") == 6  # a character class is a wildcard
    assert specificity("exact") == 5


def test_parse_full_manifest() -> None:
    spec = parse_streamroute(
        sr(
            "transcribe",
            {
                "match": {"controlId": "tx-*", "tracks": ["inbound"], "customParameters": {"tier": "gold"}},
                "priority": 5,
                "target": {
                    "subject": "stt.{call_id}.{track}",
                    "eventsSubject": "stt-ev.{call_id}",
                    "jetstream": {"stream": "STT"},
                },
                "auth": {"bearerTokenSecretRef": {"name": "tx-token"}},
                "playback": {"subject": "play.{call_id}"},
            },
        )
    )
    assert spec.key == "default/transcribe"
    assert (spec.control_id, spec.tracks, spec.custom_parameters, spec.priority) == (
        "tx-*",
        ("inbound",),
        {"tier": "gold"},
        5,
    )
    assert spec.jetstream_stream == "STT" and spec.secret_ref is not None and spec.secret_ref.key == "token"


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"match": {"controlId": "a[b"}}, "InvalidPattern"),
        ({"match": {"controlId": ""}}, "InvalidPattern"),
        ({"match": {"tracks": ["both"]}}, "InvalidSpec"),
        ({"match": {"tracks": ["inbound", "inbound"]}}, "InvalidSpec"),
        ({"target": {"subject": "a.*"}}, "InvalidSubject"),
        ({"target": {"eventsSubject": "e.{track}"}}, "InvalidSubject"),
        ({"target": {"jetstream": {"stream": "a.b"}}}, "InvalidSpec"),
        ({"priority": "high"}, "InvalidSpec"),
        ({"auth": {"bearerTokenSecretRef": {}}}, "InvalidSpec"),
        ({"auth": {"bearerTokenSecretRef": {"name": "Bad_Name"}}}, "InvalidSpec"),
        ({"auth": {"bearerTokenSecretRef": {"name": "../etc"}}}, "InvalidSpec"),
        ({"auth": {"bearerTokenSecretRef": {"name": "tok", "key": "../x"}}}, "InvalidSpec"),
        ({"auth": {"bearerTokenSecretRef": {"name": "tok", "key": ".."}}}, "InvalidSpec"),
        ({"auth": {"bearerTokenSecretRef": "tok"}}, "InvalidSpec"),
        ({"auth": {"basicAuthSecretRef": {}}}, "InvalidSpec"),
        ({"auth": {"basicAuthSecretRef": {"name": ""}}}, "InvalidSpec"),
        ({"auth": {"basicAuthSecretRef": {"name": "a/b"}}}, "InvalidSpec"),
        ({"auth": {"twilioSignature": {}}}, "InvalidSpec"),
        ({"auth": {"twilioSignature": {"authTokenSecretRef": {}}}}, "InvalidSpec"),
        ({"auth": {"twilioSignature": {"authTokenSecretRef": {"name": "tw", "key": "a/b"}}}}, "InvalidSpec"),
        ({"auth": {"twilioSignature": "yes"}}, "InvalidSpec"),
        ({"auth": "bearer"}, "InvalidSpec"),
    ],
)
def test_invalid_manifests(spec: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidRoute) as info:
        parse_streamroute(sr("bad", spec))
    assert info.value.reason == reason


def test_precedence_specific_then_priority_then_oldest_then_name() -> None:
    specs = [
        parse_streamroute(sr("catch-all", {"match": {"controlId": "*"}, "priority": 100})),
        parse_streamroute(sr("sales", {"match": {"controlId": "sales*"}})),
        parse_streamroute(sr("sales-hi", {"match": {"controlId": "sales-?", "tracks": ["inbound"]}, "priority": 9})),
        parse_streamroute(sr("sales-lo-old", {"match": {"controlId": "sales-?"}}, created="2025-01-01T00:00:00Z")),
        parse_streamroute(sr("sales-lo-new", {"match": {"controlId": "sales-?", "customParameters": {"a": "b"}}})),
    ]
    table = compile_table(specs, {}, version=1).table
    assert [r.label for r in table.routes] == ["sales-hi", "sales-lo-old", "sales-lo-new", "sales", "catch-all"]
    assert table.match("sales-1", ("inbound",), {}).label == "sales-hi"  # type: ignore[union-attr]
    assert table.match("sales-1", ("inbound", "outbound"), {}).label == "sales-lo-old"  # type: ignore[union-attr]
    assert table.match("sales-12", ("inbound",), {}).label == "sales"  # type: ignore[union-attr]
    assert table.match("other", ("inbound",), {}).label == "catch-all"  # type: ignore[union-attr]


def test_identical_match_blocks_conflict_and_the_loser_leaves_the_table() -> None:
    a = parse_streamroute(
        sr("a", {"match": {"controlId": "x-*", "tracks": ["outbound", "inbound"]}}, created="2026-01-01T00:00:00Z")
    )
    b = parse_streamroute(
        sr("b", {"match": {"controlId": "x-*", "tracks": ["inbound", "outbound"]}}, created="2026-02-01T00:00:00Z")
    )
    compiled = compile_table([b, a], {}, version=1)
    assert [r.name for r in compiled.table.routes] == ["default/a"]
    assert compiled.conflicts == {"default/b": "default/a"}


def test_compile_is_deterministic_and_table_round_trips() -> None:
    specs = [
        parse_streamroute(sr("a", {"match": {"controlId": "a-*"}, "auth": {"bearerTokenSecretRef": {"name": "t"}}})),
        *(parse_streamroute(sr(n, {"match": {"controlId": f"{n}-*"}})) for n in ("b", "c")),
    ]
    secrets = {"default/a": RouteSecrets(token_sha256=hash_token("the-token"))}
    t1 = compile_table(specs, secrets, version=7, default=default_route()).table
    t2 = compile_table(list(reversed(specs)), secrets, version=7, default=default_route()).table
    assert encode_table(t1) == encode_table(t2)
    back = decode_table(encode_table(t1))
    assert back == t1 and isinstance(back, RoutingTable)
    assert b"the-token" not in encode_table(t1)  # only the hash is stored
    assert back.routes[0].token_sha256 == hash_token("the-token") and back.routes[0].auth_kinds == ("bearer",)
    assert not back.routes[1].requires_auth and not default_route().requires_auth
    assert back.candidates("a-1")[0].name == "default/a" and back.candidates("zzz") == (back.default,)


# ---- auth kinds -------------------------------------------------------------------------

EVERY_KIND: dict[str, Any] = {
    "bearerTokenSecretRef": {"name": "sw-token"},
    "basicAuthSecretRef": {"name": "exotel-auth"},
    "twilioSignature": {"authTokenSecretRef": {"name": "twilio", "key": "authToken"}},
}


def test_parse_every_auth_kind() -> None:
    spec = parse_streamroute(sr("all", {"auth": EVERY_KIND}))
    assert spec.secret_ref is not None and (spec.secret_ref.name, spec.secret_ref.key) == ("sw-token", "token")
    assert spec.basic_secret == "exotel-auth"
    assert spec.twilio_ref is not None and (spec.twilio_ref.name, spec.twilio_ref.key) == ("twilio", "authToken")
    assert spec.secret_names == ("sw-token", "twilio", "exotel-auth")
    twilio_default = parse_streamroute(sr("t", {"auth": {"twilioSignature": {"authTokenSecretRef": {"name": "tw"}}}}))
    assert twilio_default.twilio_ref is not None and twilio_default.twilio_ref.key == "token"
    shared = parse_streamroute(
        sr("s", {"auth": {"bearerTokenSecretRef": {"name": "x"}, "basicAuthSecretRef": {"name": "x"}}})
    )
    assert shared.secret_names == ("x",)
    opens: list[dict[str, Any]] = [{}, {"auth": {}}, {"auth": None}]
    for spec_of_an_open_route in opens:
        assert parse_streamroute(sr("open", spec_of_an_open_route)).secret_names == ()


def test_compiled_auth_kinds_and_the_bearer_lock() -> None:
    spec = parse_streamroute(sr("all", {"auth": EVERY_KIND}))
    forms = RouteSecrets(
        token_sha256=hash_token("bearer-secret-value"),
        basic_sha256=hash_basic("basic-user", "basic-password"),
        twilio_key=twilio_key("twilio-token"),
    )
    route = to_route(spec, forms)
    assert route.auth_kinds == ("bearer", "basic", "twilio_signature") and route.requires_auth
    basic_only = to_route(
        parse_streamroute(sr("b", {"auth": {"basicAuthSecretRef": {"name": "b"}}})),
        RouteSecrets(basic_sha256=hash_basic("u", "p")),
    )
    # A gateway that knows only bearer tokens reads token_sha256: it must find one no token matches.
    assert basic_only.token_sha256 == NO_BEARER_TOKEN and basic_only.auth_kinds == ("basic",)
    assert re.fullmatch("[0-9a-f]{64}", NO_BEARER_TOKEN) is None  # no SHA-256 digest can equal it
    table = encode_table(RoutingTable(version=1, routes=(route, basic_only)))
    for secret in (b"bearer-secret-value", b"basic-user", b"basic-password", b"twilio-token"):
        assert secret not in table


@pytest.mark.parametrize(
    "forms",
    [RouteSecrets(), RouteSecrets(token_sha256="h", basic_sha256="h"), RouteSecrets(token_sha256="h", twilio_key="k")],
)
def test_a_route_is_never_compiled_with_less_auth_than_it_asks_for(forms: RouteSecrets) -> None:
    spec = parse_streamroute(sr("all", {"auth": EVERY_KIND}))
    with pytest.raises(ValueError, match="not resolved"):
        to_route(spec, forms)


# ---- unknown fields ---------------------------------------------------------------------------


def _nest(path: str, leaf: Any) -> dict[str, Any]:
    node: Any = leaf
    for part in reversed(path.split(".")[1:]):
        node = {part: node}
    return dict(node)


def _objects(tree: Any, where: str = "spec") -> list[str]:
    """``spec`` and every object inside it that the allow-list describes."""
    found = [where]
    for name, sub in tree.items():
        if sub is not None:
            found += _objects(sub, f"{where}.{name}")
    return found


@pytest.mark.parametrize("where", _objects(SPEC_FIELDS))
def test_an_unknown_field_anywhere_in_the_spec_refuses_the_route(where: str) -> None:
    """spec, match, target, jetstream, auth, every secret ref, twilioSignature, playback."""
    spec = _nest(f"{where}.futureField", {"anything": 1})
    with pytest.raises(InvalidRoute) as info:
        parse_streamroute(sr("new", spec))
    assert info.value.reason == "UnknownField"
    assert f"{where}.futureField" in info.value.message


def test_every_unknown_field_is_named_and_known_ones_are_not() -> None:
    spec = {
        "match": {"controlID": "x", "customParameters": {"anyKeyIsFine": "1"}},
        "target": {"transform": {"codec": "L16"}},
        "auth": {"mtls": {}, "bearerTokenSecretRef": {"name": "t", "namespace": "other"}},
    }
    with pytest.raises(InvalidRoute) as info:
        parse_streamroute(sr("typos", spec))
    assert info.value.message.startswith(
        "spec.auth.bearerTokenSecretRef.namespace, spec.auth.mtls, spec.match.controlID, spec.target.transform:"
    )
    assert "anyKeyIsFine" not in info.value.message
    every_leaf: dict[str, Any] = {
        "match": {"controlId": "a-*", "tracks": ["inbound"], "providers": ["twilio"], "customParameters": {"k": "v"}},
        "priority": 1,
        "target": {"subject": "a.{call_id}", "eventsSubject": "e.{call_id}", "jetstream": {"stream": "S"}},
        "auth": {**EVERY_KIND, "bearerTokenSecretRef": {"name": "t", "key": "token"}},
        "playback": {"subject": "p.{call_id}"},
    }
    parse_streamroute(sr("full", every_leaf))  # every field of the allow-list is understood

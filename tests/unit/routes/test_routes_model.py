"""The shared route model: templates, manifests, precedence, conflicts, table wire form."""

from __future__ import annotations

from typing import Any

import pytest

from sgw_routes.compile import compile_table
from sgw_routes.manifest import InvalidRoute, parse_streamroute
from sgw_routes.model import RoutingTable, decode_table, default_route, encode_table, hash_token, specificity
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
    specs = [parse_streamroute(sr(n, {"match": {"controlId": f"{n}-*"}})) for n in ("b", "a", "c")]
    hashes = {"default/a": hash_token("t")}
    t1 = compile_table(specs, hashes, version=7, default=default_route()).table
    t2 = compile_table(list(reversed(specs)), hashes, version=7, default=default_route()).table
    assert encode_table(t1) == encode_table(t2)
    back = decode_table(encode_table(t1))
    assert back == t1 and isinstance(back, RoutingTable)
    assert b'"t"' not in encode_table(t1)  # only the hash is stored
    assert back.routes[0].accepts_token("t") and not back.routes[0].accepts_token("u")
    assert back.candidates("a-1")[0].name == "default/a" and back.candidates("zzz") == (back.default,)

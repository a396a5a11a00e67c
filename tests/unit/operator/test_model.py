"""Pure model: snapshots, Secret reduction, whole-table evaluation, precedence and conflicts."""

from __future__ import annotations

import itertools

import pytest

from sgw_operator.model import (
    CONFLICTED,
    INVALID_SECRET,
    SECRET_KEY_NOT_FOUND,
    SECRET_NOT_FOUND,
    SecretState,
    evaluate,
    referenced_secrets,
    same_content,
    secret_refs,
    secret_state,
    snapshot,
)
from sgw_routes.credentials import hash_basic, twilio_key
from sgw_routes.model import NO_BEARER_TOKEN, RoutingTable, hash_token
from tests.unit.operator.conftest import route_obj, secret_obj, snap, with_basic, with_secret, with_twilio


def test_snapshot_of_a_valid_route_keeps_identity_and_owned_status() -> None:
    status = {"observedGeneration": 1, "conditions": [{"type": "Ready"}], "kopf": {"progress": {}}}
    s = snap("a", {"match": {"controlId": "a-*"}}, generation=3, status=status)
    assert (s.key, s.uid, s.generation, s.deleting) == ("voice/a", "uid-voice-a", 3, False)
    assert s.spec is not None
    assert s.spec.control_id == "a-*"
    assert s.status == {"observedGeneration": 1, "conditions": [{"type": "Ready"}]}


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"match": {"controlId": "a-[x"}}, "InvalidPattern"),
        ({"target": {"subject": "a.*"}}, "InvalidSubject"),
        ({"target": {"eventsSubject": "e.{track}"}}, "InvalidSubject"),
        ({"match": {"tracks": ["inbound", "inbound"]}}, "InvalidSpec"),
        ({"target": {"jetstream": {"stream": "bad.name"}}}, "InvalidSpec"),
        ({"auth": {"oauth2": {"issuer": "x"}}}, "UnknownField"),
        ({"target": {"transform": {"codec": "L16"}}}, "UnknownField"),
        ({"auth": {"basicAuthSecretRef": {}}}, "InvalidSpec"),
    ],
)
def test_snapshot_of_an_invalid_route_carries_the_reason(spec: dict[str, object], reason: str) -> None:
    s = snap("bad", spec)
    assert s.spec is None
    assert s.invalid_reason == reason
    assert s.invalid_message


def test_snapshot_marks_deletion() -> None:
    assert snap("a", deleting=True).deleting


def test_secret_refs_read_leniently() -> None:
    assert secret_refs(route_obj("a", with_secret("tok"))) == {("voice", "tok")}
    every_kind = {"auth": {**with_secret("t")["auth"], **with_basic("b")["auth"], **with_twilio("w")["auth"]}}
    assert secret_refs(route_obj("a", every_kind)) == {("voice", "t"), ("voice", "b"), ("voice", "w")}
    assert secret_refs(route_obj("a", {"auth": {"bearerTokenSecretRef": {}}})) == set()
    assert secret_refs(route_obj("a", {"auth": {"twilioSignature": "nonsense"}})) == set()
    assert secret_refs(route_obj("a", {"auth": "nonsense"})) == set()
    assert secret_refs(route_obj("a")) == set()


def test_secret_state_reduces_stripped_values_and_flags_unusable_keys() -> None:
    state = secret_state(secret_obj("s", {"token": b"abc \n", "empty": b"  \n", "binary": b"\xff\xfe"}))
    assert state.found
    assert state.hashes == {"token": hash_token("abc")}
    assert state.twilio_keys == {"token": twilio_key("abc")}
    assert state.basic_sha256 is None
    assert state.problems == {"empty": "is empty", "binary": "is not UTF-8 text"}
    assert "abc" not in repr(state)
    assert secret_state(None) == SecretState(found=False)


def test_secret_state_of_a_basic_auth_secret_keeps_only_the_pair_hash() -> None:
    state = secret_state(secret_obj("b", {"username": b"exotel-key\n", "password": b"s3cr3t-t0ken"}))
    assert state.basic_sha256 == hash_basic("exotel-key", "s3cr3t-t0ken")
    assert "s3cr3t-t0ken" not in repr(state) and "exotel-key" not in repr(state)
    colon = secret_state(secret_obj("b", {"username": b"a:b", "password": b"c"}))
    assert colon.basic_sha256 is None
    assert "contains ':'" in colon.problems["username"]


def test_evaluate_orders_by_precedence_and_resolves_tokens() -> None:
    snaps = [
        snap("catch-all", {"match": {"controlId": "*"}, "priority": 100}),
        snap("sales", {"match": {"controlId": "sales-*"}}),
        snap("secure", with_secret("tok", match={"controlId": "secure-*"})),
        snap("exact", {"match": {"controlId": "sales-42"}}),
    ]
    secrets = {("voice", "tok"): secret_state(secret_obj("tok", {"token": b"t0ken"}))}
    result = evaluate(snaps, secrets)
    # Literal characters first (sales-42: 8, secure-*: 7, sales-*: 6), priority only among equals.
    assert [r.name for r in result.table.routes] == ["voice/exact", "voice/secure", "voice/sales", "voice/catch-all"]
    by_name = {r.name: r for r in result.table.routes}
    assert by_name["voice/secure"].token_sha256 == hash_token("t0ken")
    assert by_name["voice/sales"].token_sha256 is None
    assert result.table.version == 0
    assert all(o.accepted and o.route is not None for o in result.outcomes.values())


def test_evaluate_resolves_every_auth_kind_and_locks_the_bearer_field_without_a_token() -> None:
    secrets = {
        ("voice", "tok"): secret_state(secret_obj("tok", {"token": b"t0ken"})),
        ("voice", "ba"): secret_state(secret_obj("ba", {"username": b"u", "password": b"p"})),
        ("voice", "tw"): secret_state(secret_obj("tw", {"authToken": b"twilio-auth-token"})),
    }
    both = {"auth": {**with_secret("tok")["auth"], **with_twilio("tw", key="authToken")["auth"]}}
    result = evaluate(
        [
            snap("basic", with_basic("ba", match={"controlId": "exotel-*"})),
            snap("twilio", with_twilio("tw", key="authToken", match={"controlId": "twilio-*"})),
            snap("both", {**both, "match": {"controlId": "both-*"}}),
        ],
        secrets,
    )
    by_name = {r.name: r for r in result.table.routes}
    basic, twilio, mixed = by_name["voice/basic"], by_name["voice/twilio"], by_name["voice/both"]
    assert (basic.basic_sha256, basic.twilio_key) == (hash_basic("u", "p"), None)
    assert (twilio.twilio_key, twilio.basic_sha256) == (twilio_key("twilio-auth-token"), None)
    # Without a bearer kind the legacy field can match no token: an older gateway refuses, never serves open.
    assert basic.token_sha256 == twilio.token_sha256 == NO_BEARER_TOKEN
    assert (mixed.token_sha256, mixed.twilio_key) == (hash_token("t0ken"), twilio_key("twilio-auth-token"))
    assert mixed.auth_kinds == ("bearer", "twilio_signature") and basic.auth_kinds == ("basic",)


@pytest.mark.parametrize(
    ("data", "reason", "says"),
    [
        (None, SECRET_NOT_FOUND, "does not exist"),
        ({"username": b"u"}, SECRET_KEY_NOT_FOUND, "no key 'password'"),
        ({"username": b"u", "password": b" \n"}, INVALID_SECRET, "'password'"),
        ({"username": b"u:x", "password": b"p"}, INVALID_SECRET, "contains ':'"),
    ],
)
def test_a_basic_auth_route_without_a_usable_secret_stays_out(
    data: dict[str, bytes] | None, reason: str, says: str
) -> None:
    secrets = {} if data is None else {("voice", "ba"): secret_state(secret_obj("ba", data))}
    result = evaluate([snap("basic", with_basic("ba"))], secrets)
    outcome = result.outcomes["voice/basic"]
    assert (outcome.reason, outcome.accepted, outcome.route) == (reason, True, None)
    assert says in outcome.message and "voice/ba" in outcome.message
    assert result.table.routes == ()


def test_one_unresolved_kind_keeps_a_multi_kind_route_out() -> None:
    """Any-of at the gateway, but every configured kind must resolve: never less auth than written."""
    secrets = {("voice", "tok"): secret_state(secret_obj("tok", {"token": b"t0ken"}))}
    spec = {"auth": {**with_secret("tok")["auth"], **with_twilio("missing")["auth"]}}
    result = evaluate([snap("both", spec)], secrets)
    assert result.outcomes["voice/both"].reason == SECRET_NOT_FOUND
    assert "voice/missing" in result.outcomes["voice/both"].message
    assert result.table.routes == ()


def test_evaluate_is_deterministic_whatever_the_order() -> None:
    snaps = [
        snap("b", {"match": {"controlId": "x-*"}}),
        snap("a", {"match": {"controlId": "x-*"}}),
        snap("c", {"match": {"controlId": "x-*"}, "priority": -1}),
        snap("d", {"match": {"controlId": "y"}}),
    ]
    first = evaluate(snaps, {})
    for perm in itertools.permutations(snaps):
        assert evaluate(perm, {}) == first
    assert [r.name for r in first.table.routes] == ["voice/a", "voice/d"]


def test_identical_match_blocks_conflict_and_name_the_winner() -> None:
    match = {"match": {"controlId": "x-*", "tracks": ["outbound", "inbound"], "customParameters": {"k": "v"}}}
    same_reordered = {"match": {"controlId": "x-*", "tracks": ["inbound", "outbound"], "customParameters": {"k": "v"}}}
    result = evaluate(
        [
            snap("older", match, created="2026-01-01T00:00:00Z"),
            snap("newer", same_reordered, created="2026-02-01T00:00:00Z"),
            snap("other", {"match": {"controlId": "x-*"}}),  # different block: no conflict
        ],
        {},
    )
    assert [r.name for r in result.table.routes] == ["voice/older", "voice/other"]
    loser = result.outcomes["voice/newer"]
    assert (loser.reason, loser.accepted, loser.route) == (CONFLICTED, False, None)
    assert "voice/older" in loser.message
    assert "older" in loser.message


def test_priority_and_name_break_conflicts() -> None:
    same = {"match": {"controlId": "x-*"}}
    result = evaluate([snap("a", same), snap("b", {**same, "priority": 3})], {})
    assert result.outcomes["voice/a"].reason == CONFLICTED
    assert "higher priority (3 > 0)" in result.outcomes["voice/a"].message
    result = evaluate([snap("b", same), snap("a", same)], {})
    assert result.outcomes["voice/b"].reason == CONFLICTED
    assert "name order" in result.outcomes["voice/b"].message


def test_conflicts_are_per_namespace_qualified_names() -> None:
    same = {"match": {"controlId": "x-*"}}
    result = evaluate([snap("a", same, ns="one"), snap("a", same, ns="two")], {})
    assert result.outcomes["two/a"].reason == CONFLICTED
    assert "one/a" in result.outcomes["two/a"].message


@pytest.mark.parametrize(
    ("secrets", "reason"),
    [
        ({}, SECRET_NOT_FOUND),
        ({("voice", "tok"): SecretState(found=False)}, SECRET_NOT_FOUND),
        ({("voice", "tok"): SecretState(found=True, hashes={"other": "h"})}, SECRET_KEY_NOT_FOUND),
        ({("voice", "tok"): SecretState(found=True, problems={"token": "is empty"})}, INVALID_SECRET),
    ],
)
def test_unresolved_secrets_keep_the_route_out(secrets: dict[tuple[str, str], SecretState], reason: str) -> None:
    result = evaluate([snap("secure", with_secret("tok"))], secrets)
    outcome = result.outcomes["voice/secure"]
    assert (outcome.reason, outcome.accepted, outcome.route) == (reason, True, None)
    assert "voice/tok" in outcome.message
    assert result.table.routes == ()


def test_a_route_without_its_secret_does_not_win_a_conflict() -> None:
    same = {"controlId": "x-*"}
    result = evaluate(
        [snap("a", with_secret("missing", match=same)), snap("b", {"match": same}, created="2027-01-01T00:00:00Z")], {}
    )
    assert [r.name for r in result.table.routes] == ["voice/b"]
    assert result.outcomes["voice/a"].reason == SECRET_NOT_FOUND


def test_deleting_and_invalid_routes_are_left_out() -> None:
    result = evaluate([snap("gone", deleting=True), snap("bad", {"match": {"controlId": "[x"}})], {})
    assert result.table.routes == ()
    assert set(result.outcomes) == {"voice/bad"}
    assert not result.outcomes["voice/bad"].accepted


def test_referenced_secrets_skips_deleting_and_invalid() -> None:
    snaps = [
        snap("a", with_secret("s1")),
        snap("b", with_secret("s2"), deleting=True),
        snap("c", {"match": {"controlId": "[x"}, "auth": {"bearerTokenSecretRef": {"name": "s3"}}}),
        snap("d", with_secret("s1", key="other"), ns="team"),
        snap("e", with_basic("b1")),
        snap("f", with_twilio("t1")),
    ]
    assert referenced_secrets(snaps) == {("voice", "s1"), ("team", "s1"), ("voice", "b1"), ("voice", "t1")}


def test_same_content_ignores_version_only() -> None:
    table = evaluate([snap("a")], {}).table
    assert same_content(table, RoutingTable(version=9, routes=table.routes))
    assert not same_content(table, RoutingTable(version=0))
    assert not same_content(None, table)
    assert same_content(None, None)


def test_snapshot_defaults_namespace() -> None:
    obj = route_obj("a")
    del obj["metadata"]["namespace"]
    assert snapshot(obj).key == "default/a"


def test_snapshot_survives_what_slips_past_the_schema() -> None:
    obj = route_obj("odd", {"priority": "high"})
    obj["metadata"]["generation"] = "7"
    s = snapshot(obj)
    assert s.generation == 0
    assert s.spec is None
    assert s.invalid_reason == "InvalidSpec"

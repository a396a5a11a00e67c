"""Stream-auth Secrets through the unmodified operator (emulated API server, real nats-server, the
real kubectl): a basic-auth Secret and a Twilio auth token created, changed and deleted, and routes
with fields the gateway does not understand refused, never published open."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import pytest

from sgw_routes.credentials import hash_basic, twilio_key
from sgw_routes.model import NO_BEARER_TOKEN, RoutingTable
from tests.integration.operator.harness import OperatorStack, condition, route_names

pytestmark = pytest.mark.timeout(180)

PASSWORD_1, PASSWORD_2 = "exotel-t0ken-" + "1" * 16, "exotel-t0ken-" + "2" * 16
TWILIO_1, TWILIO_2 = "twilio-auth-" + "a" * 20, "twilio-auth-" + "b" * 20


def manifest(name: str, spec: Mapping[str, Any]) -> str:
    return json.dumps(
        {"apiVersion": "streamgateway.io/v1alpha1", "kind": "StreamRoute", "metadata": {"name": name}, "spec": spec}
    )


def route_of(table: RoutingTable, name: str) -> Any:
    return next((r for r in table.routes if r.name == f"voice/{name}"), None)


async def assert_no_secret_in_table(s: OperatorStack) -> None:
    raw = await s.table_bytes()
    assert raw is not None
    for secret in (PASSWORD_1, PASSWORD_2, TWILIO_1, TWILIO_2):
        assert secret.encode() not in raw


async def test_basic_auth_secret_created_changed_deleted(operator_stack: OperatorStack) -> None:
    s = operator_stack
    spec = {"match": {"controlId": "exotel-*"}, "auth": {"basicAuthSecretRef": {"name": "exotel-auth"}}}
    s.kubectl("apply", "-f", "-", input=manifest("exotel", spec))
    obj = await s.wait_condition("exotel", status="False", reason="SecretNotFound")
    assert "voice/exotel-auth" in condition(obj, "Ready")["message"]  # type: ignore[index]
    assert condition(obj, "Accepted")["status"] == "True"  # type: ignore[index]

    s.kubectl(
        "create",
        "secret",
        "generic",
        "exotel-auth",
        "--type=kubernetes.io/basic-auth",
        "--from-literal=username=exotel-key",
        f"--from-literal=password={PASSWORD_1}",
    )
    s.kubectl("wait", "--for=condition=Ready", "--timeout=30s", "sr/exotel", timeout=60)
    table = await s.wait_table(lambda t: route_names(t) == ["voice/exotel"])
    route = route_of(table, "exotel")
    assert route.basic_sha256 == hash_basic("exotel-key", PASSWORD_1)
    assert route.token_sha256 == NO_BEARER_TOKEN and route.twilio_key is None

    patch = {"data": {"password": base64.b64encode(PASSWORD_2.encode() + b"\n").decode()}}
    s.kubectl("patch", "secret/exotel-auth", "--type=merge", "-p", json.dumps(patch))
    rotated = await s.wait_table(
        lambda t: (
            route_of(t, "exotel") is not None
            and route_of(t, "exotel").basic_sha256 == hash_basic("exotel-key", PASSWORD_2)
        ),
        message="the new password's hash",
    )
    assert rotated.version > table.version
    await assert_no_secret_in_table(s)

    # A username the Basic scheme cannot carry makes the Secret unusable, not the route open.
    s.kubectl("patch", "secret/exotel-auth", "--type=merge", "-p", '{"stringData": {"username": "a:b"}}')
    bad = await s.wait_condition("exotel", status="False", reason="InvalidSecret")
    assert "contains ':'" in condition(bad, "Ready")["message"]  # type: ignore[index]
    await s.wait_table(lambda t: route_names(t) == [])

    s.kubectl("patch", "secret/exotel-auth", "--type=merge", "-p", '{"stringData": {"username": "exotel-key"}}')
    await s.wait_condition("exotel", status="True")
    s.kubectl("delete", "secret/exotel-auth")
    await s.wait_condition("exotel", status="False", reason="SecretNotFound")
    await s.wait_table(lambda t: route_names(t) == [])
    logs = s.stop()
    assert PASSWORD_1 not in logs and PASSWORD_2 not in logs


async def test_twilio_auth_token_created_changed_deleted(operator_stack: OperatorStack) -> None:
    s = operator_stack
    spec = {
        "match": {"controlId": "twilio-*"},
        "auth": {
            "bearerTokenSecretRef": {"name": "sw-token"},
            "twilioSignature": {"authTokenSecretRef": {"name": "twilio", "key": "authToken"}},
        },
    }
    s.kubectl("create", "secret", "generic", "sw-token", "--from-literal=token=signalwire-token")
    s.kubectl("apply", "-f", "-", input=manifest("both", spec))
    # Every kind the route names must resolve: the bearer token alone does not make it Ready.
    await s.wait_condition("both", status="False", reason="SecretNotFound")
    assert route_names(await s.wait_table(lambda t: True)) == []

    s.kubectl("create", "secret", "generic", "twilio", f"--from-literal=authToken={TWILIO_1}")
    table = await s.wait_table(lambda t: route_names(t) == ["voice/both"])
    assert route_of(table, "both").twilio_key == twilio_key(TWILIO_1)
    assert route_of(table, "both").auth_kinds == ("bearer", "twilio_signature")

    s.kubectl("patch", "secret/twilio", "--type=merge", "-p", json.dumps({"stringData": {"authToken": TWILIO_2}}))
    await s.wait_table(
        lambda t: route_of(t, "both") is not None and route_of(t, "both").twilio_key == twilio_key(TWILIO_2),
        message="the new token's key schedule",
    )
    await assert_no_secret_in_table(s)

    s.kubectl("patch", "secret/twilio", "--type=json", "-p", '[{"op": "remove", "path": "/data/authToken"}]')
    missing_key = await s.wait_condition("both", status="False", reason="SecretKeyNotFound")
    assert "authToken" in condition(missing_key, "Ready")["message"]  # type: ignore[index]
    await s.wait_table(lambda t: route_names(t) == [])

    s.kubectl("delete", "secret/twilio")
    await s.wait_condition("both", status="False", reason="SecretNotFound")
    logs = s.stop()
    assert TWILIO_1 not in logs and TWILIO_2 not in logs


async def test_unknown_fields_are_refused_never_served_open(operator_stack: OperatorStack) -> None:
    s = operator_stack
    # Under spec.auth the schema keeps what it does not know, so the operator sees it and refuses.
    future_auth = {"match": {"controlId": "future-*"}, "auth": {"mutualTls": {"caSecretRef": {"name": "ca"}}}}
    s.kubectl("apply", "-f", "-", input=manifest("future", future_auth))
    obj = await s.wait_condition("future", "Accepted", status="False", reason="UnknownField")
    assert obj["spec"]["auth"] == future_auth["auth"]  # stored as written, not pruned
    assert "spec.auth.mutualTls" in condition(obj, "Accepted")["message"]  # type: ignore[index]
    assert condition(obj, "Ready")["reason"] == "UnknownField"  # type: ignore[index]
    events = [e for e in s.events("future") if e["reason"] == "UnknownField"]
    assert events and events[0]["type"] == "Warning"

    # Fixing the spec makes it a normal open route (here: no auth left).
    s.kubectl("patch", "sr/future", "--type=json", "-p", '[{"op": "remove", "path": "/spec/auth/mutualTls"}]')
    await s.wait_condition("future", status="True")
    assert route_names(await s.wait_table(lambda t: route_names(t) == ["voice/future"])) == ["voice/future"]

    # Elsewhere in the spec the schema itself refuses an unknown field (kubectl's strict validation).
    typo = {"match": {"controlId": "typo-*", "fromNumber": "+15550100"}}
    result = s.kubectl("apply", "-f", "-", input=manifest("typo", typo), check=False)
    assert result.returncode != 0 and "fromNumber" in result.stderr
    assert s.route("typo") is None

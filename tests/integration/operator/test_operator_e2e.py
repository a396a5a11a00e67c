"""The unmodified operator under KopfRunner, against the emulated API server and a real nats-server,
driven with the real kubectl v1.35 as a user would: apply (default validation), wait, get,
patch, delete; the compiled table read back from the NATS KV bucket."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import pytest

from sgw_routes.model import hash_token
from tests.integration.operator.harness import (
    EXAMPLES,
    OperatorStack,
    condition,
    eventually,
    route_names,
)

pytestmark = pytest.mark.timeout(180)

EXAMPLE_TOKEN = "replace-me-with-a-long-random-token"
EXAMPLE_ROUTES = ("transcription", "analytics-both-tracks", "catch-all", "voicebot")


def manifest(name: str, spec: Mapping[str, Any]) -> str:
    return json.dumps(
        {"apiVersion": "streamgateway.io/v1alpha1", "kind": "StreamRoute", "metadata": {"name": name}, "spec": spec}
    )


async def test_examples_apply_wait_get_and_publish(operator_stack: OperatorStack) -> None:
    s = operator_stack
    empty = await s.wait_table(lambda t: True, message="the initial (empty) table")
    assert empty.routes == ()

    files = ["transcription-secret.yaml", "transcription.yaml", "analytics-both-tracks.yaml", "catch-all.yaml"]
    files.append("voicebot-bidirectional.yaml")
    applied = s.kubectl("apply", *(arg for f in files for arg in ("-f", str(EXAMPLES / f))))
    assert "streamroute.streamgateway.io/transcription created" in applied.stdout

    s.kubectl("wait", "--for=condition=Ready", "--timeout=30s", *(f"sr/{n}" for n in EXAMPLE_ROUTES), timeout=60)

    listing = s.kubectl("get", "sr").stdout.splitlines()
    assert listing[0].split() == ["NAME", "PATTERN", "SUBJECT", "READY", "REASON", "AGE"]
    rows = {line.split()[0]: line.split() for line in listing[1:]}
    assert rows["transcription"][1:5] == ["transcribe-*", "transcribe.{call_id}.{track}", "True", "Ready"]
    assert rows["catch-all"][1:5] == ["*", "audio.{call_id}.{track}", "True", "Ready"]

    table = await s.wait_table(lambda t: len(t.routes) == 4)
    # Precedence: most literal characters first, the catch-all last.
    assert route_names(table) == [
        "voice/transcription",
        "voice/analytics-both-tracks",
        "voice/voicebot",
        "voice/catch-all",
    ]
    by_name = {r.name: r for r in table.routes}
    assert by_name["voice/transcription"].token_sha256 == hash_token(EXAMPLE_TOKEN)
    assert by_name["voice/transcription"].tracks == ("inbound",)
    assert by_name["voice/analytics-both-tracks"].jetstream_stream == "ANALYTICS"
    assert by_name["voice/analytics-both-tracks"].custom_parameters == {"analytics": "on"}
    assert by_name["voice/voicebot"].playback_subject == "play.{call_id}"
    assert by_name["voice/catch-all"].token_sha256 is None
    assert by_name["voice/catch-all"].priority == -100

    obj = s.route("transcription")
    assert obj is not None
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 1
    assert condition(obj, "Accepted") is not None
    assert condition(obj, "Accepted")["status"] == "True"  # type: ignore[index]
    assert 0 < obj["status"]["table"]["version"] <= table.version
    assert obj["metadata"]["finalizers"] == ["streamgateway.io/route-table"]
    events = await eventually(lambda: s.events("transcription"), message="an Event on the route")
    assert {(e["type"], e["reason"]) for e in events} >= {("Normal", "Ready")}

    assert s.metric("sgw_operator_routes") == 4
    assert s.metric("sgw_operator_table_version") == table.version
    assert (s.metric("sgw_operator_table_publishes_total", reason="ok") or 0) >= 2
    assert s.metric("sgw_operator_reconciles_total", reason="accepted") == 4

    # The token itself never leaves the Secret: not in the table, not in the operator's logs.
    raw = await s.table_bytes()
    assert raw is not None
    assert EXAMPLE_TOKEN.encode() not in raw
    described = s.kubectl("describe", "sr/transcription").stdout
    assert "Ready" in described
    assert "published in route table version" in described
    assert EXAMPLE_TOKEN not in s.stop()


async def test_conflict_is_reported_and_moves_with_priority(operator_stack: OperatorStack) -> None:
    s = operator_stack
    spec = {"match": {"controlId": "support-*"}, "target": {"subject": "support.{call_id}.{track}"}}
    s.kubectl("apply", "-f", "-", input=manifest("first", spec))
    await s.wait_condition("first", status="True")
    s.kubectl("apply", "-f", "-", input=manifest("second", spec))

    second = await s.wait_condition("second", "Accepted", status="False", reason="Conflicted")
    message = condition(second, "Accepted")["message"]  # type: ignore[index]
    assert "voice/first" in message
    assert condition(second, "Ready")["reason"] == "Conflicted"  # type: ignore[index]
    table = await s.wait_table(lambda t: route_names(t) == ["voice/first"])
    assert table.routes[0].subject == "support.{call_id}.{track}"

    # A higher priority wins the identical match block: the OTHER route's status flips too.
    s.kubectl("patch", "sr/second", "--type=merge", "-p", '{"spec": {"priority": 5}}')
    second = await s.wait_condition("second", status="True")
    assert second["status"]["observedGeneration"] == second["metadata"]["generation"] == 2
    first = await s.wait_condition("first", "Accepted", status="False", reason="Conflicted")
    assert "voice/second" in condition(first, "Accepted")["message"]  # type: ignore[index]
    assert "priority" in condition(first, "Accepted")["message"]  # type: ignore[index]
    await s.wait_table(lambda t: route_names(t) == ["voice/second"])
    warnings = await eventually(
        lambda: [e for e in s.events("first") if e["reason"] == "Conflicted"], message="a Conflicted Event"
    )
    assert warnings[0]["type"] == "Warning"

    # The winner goes away: the loser is accepted again.
    s.kubectl("delete", "sr/second", "--timeout=30s")
    await s.wait_condition("first", status="True")
    await s.wait_table(lambda t: route_names(t) == ["voice/first"])
    assert s.metric("sgw_operator_reconciles_total", reason="conflicted") == 2


async def test_invalid_routes_rejected_by_schema_or_reported(operator_stack: OperatorStack) -> None:
    s = operator_stack
    bad_subject = {"match": {"controlId": "x-*"}, "target": {"subject": "audio.*.{track}"}}
    result = s.kubectl("apply", "-f", "-", input=manifest("bad", bad_subject), check=False)
    assert result.returncode != 0
    assert "spec.target.subject" in result.stderr
    assert s.route("bad") is None

    # Glob syntax is beyond the schema: the operator reports it and leaves the route out.
    bad_glob = {"match": {"controlId": "x-[ab"}, "target": {"subject": "x.{call_id}"}}
    s.kubectl("apply", "-f", "-", input=manifest("badglob", bad_glob))
    obj = await s.wait_condition("badglob", "Accepted", status="False", reason="InvalidPattern")
    assert condition(obj, "Ready")["reason"] == "InvalidPattern"  # type: ignore[index]
    assert obj["status"]["observedGeneration"] == 1
    table = await s.wait_table(lambda t: True)
    assert route_names(table) == []
    assert s.metric("sgw_operator_reconciles_total", reason="invalid") == 1

    # Fixing the spec fixes the status (new generation observed).
    s.kubectl("patch", "sr/badglob", "--type=merge", "-p", '{"spec": {"match": {"controlId": "x-[ab]"}}}')
    fixed = await s.wait_condition("badglob", status="True")
    assert fixed["status"]["observedGeneration"] == 2
    assert condition(fixed, "Accepted")["status"] == "True"  # type: ignore[index]
    await s.wait_table(lambda t: route_names(t) == ["voice/badglob"])


async def test_secret_missing_then_created_then_rotated(operator_stack: OperatorStack) -> None:
    s = operator_stack
    secure = {"match": {"controlId": "secure-*"}, "auth": {"bearerTokenSecretRef": {"name": "secure-token"}}}
    s.kubectl("apply", "-f", "-", input=manifest("secure", secure))
    obj = await s.wait_condition("secure", status="False", reason="SecretNotFound")
    assert "voice/secure-token" in condition(obj, "Ready")["message"]  # type: ignore[index]
    assert condition(obj, "Accepted")["status"] == "True"  # type: ignore[index]
    assert obj["spec"]["auth"]["bearerTokenSecretRef"]["key"] == "token"  # the CRD's default
    assert route_names(await s.wait_table(lambda t: True)) == []

    # The Secret appears: the route becomes Ready without being touched.
    s.kubectl("create", "secret", "generic", "secure-token", "--from-literal=token=first-token")
    s.kubectl("wait", "--for=condition=Ready", "--timeout=30s", "sr/secure", timeout=60)
    table = await s.wait_table(lambda t: route_names(t) == ["voice/secure"])
    assert table.routes[0].token_sha256 == hash_token("first-token")

    # Another route wants a key the Secret does not have.
    other_key = {
        "match": {"controlId": "other-*"},
        "auth": {"bearerTokenSecretRef": {"name": "secure-token", "key": "x"}},
    }
    s.kubectl("apply", "-f", "-", input=manifest("other-key", other_key))
    await s.wait_condition("other-key", status="False", reason="SecretKeyNotFound")

    # Rotation: the stored hash follows the Secret; trailing whitespace is stripped as in file mode.
    patch = {"data": {"token": base64.b64encode(b"second-token\n").decode()}}
    s.kubectl("patch", "secret/secure-token", "--type=merge", "-p", json.dumps(patch))
    rotated = await s.wait_table(
        lambda t: bool(t.routes) and t.routes[0].token_sha256 == hash_token("second-token"), message="rotated hash"
    )
    assert rotated.version > table.version
    assert condition(s.route("secure"), "Ready")["status"] == "True"  # type: ignore[index]

    s.kubectl("delete", "secret/secure-token")
    await s.wait_condition("secure", status="False", reason="SecretNotFound")
    await s.wait_table(lambda t: route_names(t) == [])


async def test_delete_removes_the_route_from_the_table(operator_stack: OperatorStack) -> None:
    s = operator_stack
    s.kubectl("apply", "-f", str(EXAMPLES / "catch-all.yaml"), "-f", str(EXAMPLES / "voicebot-bidirectional.yaml"))
    s.kubectl("wait", "--for=condition=Ready", "--timeout=30s", "sr/catch-all", "sr/voicebot", timeout=60)
    before = await s.wait_table(lambda t: len(t.routes) == 2)

    s.kubectl("delete", "sr/voicebot", "--timeout=30s", timeout=60)
    assert s.route("voicebot") is None
    # The finalizer held the object until the table without it was live, so it is gone already.
    after = await s.table()
    assert after is not None
    assert route_names(after) == ["voice/catch-all"]
    assert after.version > before.version
    assert s.metric("sgw_operator_routes") == 1


async def test_restart_recovers_the_same_table_and_catches_up(operator_stack: OperatorStack) -> None:
    s = operator_stack
    s.kubectl(
        "apply",
        *("-f", str(EXAMPLES / "transcription-secret.yaml")),
        *("-f", str(EXAMPLES / "transcription.yaml")),
        *("-f", str(EXAMPLES / "catch-all.yaml")),
        *("-f", str(EXAMPLES / "voicebot-bidirectional.yaml")),
    )
    s.kubectl("wait", "--for=condition=Ready", "--timeout=30s", "sr/transcription", "sr/catch-all", "sr/voicebot")
    before = await s.wait_table(lambda t: len(t.routes) == 3)
    statuses = {n: s.route(n)["status"] for n in ("transcription", "catch-all", "voicebot")}  # type: ignore[index]

    s.restart()
    # Same routes: nothing to republish, the live table keeps its version; statuses stay put.
    await eventually(lambda: s.metric("sgw_operator_table_version") == before.version, message="KV table read")
    await s.wait_condition("catch-all", status="True")
    assert await s.table() == before
    assert {n: s.route(n)["status"] for n in statuses} == statuses  # type: ignore[index]

    # Changes while the operator is down are picked up by the full re-list after it starts.
    s.stop()
    s.kubectl("delete", "sr/voicebot", "--wait=false")
    s.kubectl("apply", "-f", "-", input=manifest("late", {"match": {"controlId": "late-call"}}))
    s.kubectl("patch", "secret/transcription-token", "--type=merge", "-p", '{"stringData": {"token": "new"}}')
    assert s.route("voicebot") is not None  # held by the finalizer while nobody can unpublish it
    s.start()
    table = await s.wait_table(
        lambda t: (
            route_names(t) == ["voice/transcription", "voice/late", "voice/catch-all"]
            and t.routes[0].token_sha256 == hash_token("new")
        ),
        message="caught up",
    )
    assert table.version > before.version
    await s.wait_condition("late", status="True")
    await eventually(lambda: s.route("voicebot") is None, message="the deleted route to go")


async def test_nats_outage_reports_publish_failed_and_recovers(operator_stack: OperatorStack) -> None:
    s = operator_stack
    s.kubectl("apply", "-f", str(EXAMPLES / "catch-all.yaml"))
    await s.wait_condition("catch-all", status="True")
    before = await s.wait_table(lambda t: len(t.routes) == 1)

    await s.nats.stop()
    s.kubectl("apply", "-f", str(EXAMPLES / "voicebot-bidirectional.yaml"))
    down = await s.wait_condition("voicebot", status="False", reason="PublishFailed", timeout=30)
    assert condition(down, "Accepted")["status"] == "True"  # type: ignore[index]
    # The route already live stays Ready: gateways keep serving the last table.
    assert condition(s.route("catch-all"), "Ready")["status"] == "True"  # type: ignore[index]
    # The condition is written inside the failing round, the error counters after it returns.
    await eventually(
        lambda: (
            (s.metric("sgw_operator_table_publishes_total", reason="error") or 0) >= 1
            and (s.metric("sgw_operator_reconcile_errors_total", reason="nats") or 0) >= 1
        ),
        message="the failed publish and the failed round counted",
    )

    await s.nats.start()  # same port, same JetStream store
    await s.wait_condition("voicebot", status="True", timeout=60)
    after = await s.wait_table(lambda t: len(t.routes) == 2)
    assert after.version > before.version

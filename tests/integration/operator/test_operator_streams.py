"""The operator keeps the JetStream streams of durable routes: creates and updates the ones it owns,
checks and never touches the user's, reports both in ``StreamReady``, and deletes a stream only
with ``deletePolicy: Delete``. The unmodified operator under KopfRunner, the emulated API server,
the real kubectl and a real nats-server, whose streams are read back with nats-py."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import nats
import pytest
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError

from gateway.embedded_nats import EmbeddedNats
from tests.integration.operator.harness import CRD, OperatorStack, condition, eventually, running
from tests.k8s.fixtures import K8s

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def stack(k8s: K8s, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OperatorStack]:
    """The operator stack, with streams that are not ready looked at again every half second."""
    k8s.apply_crd(CRD)
    k8s.create_namespace("voice")
    s = OperatorStack(k8s, nats_server, "voice", monkeypatch)
    s.settings = dataclasses.replace(s.settings, stream_recheck=0.5)
    with running(s):
        yield s


def manifest(name: str, target: Mapping[str, Any], **spec: Any) -> str:
    body = {"match": {"controlId": f"{name}-*"}, "target": dict(target), **spec}
    return json.dumps(
        {"apiVersion": "streamgateway.io/v1alpha1", "kind": "StreamRoute", "metadata": {"name": name}, "spec": body}
    )


async def stream(url: str, name: str) -> StreamConfig | None:
    nc = await nats.connect(url)
    try:
        return (await nc.jetstream().stream_info(name)).config
    except NotFoundError:
        return None
    finally:
        await nc.close()


async def add_stream(url: str, name: str, subjects: list[str], *, update: bool = False) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        config = StreamConfig(name=name, subjects=subjects)
        await (js.update_stream(config) if update else js.add_stream(config))
    finally:
        await nc.close()


def patch(s: OperatorStack, name: str, jetstream: Mapping[str, Any]) -> None:
    s.kubectl("patch", f"sr/{name}", "--type=merge", "-p", json.dumps({"spec": {"target": {"jetstream": jetstream}}}))


async def test_the_operator_creates_updates_and_reports_a_refused_stream(stack: OperatorStack) -> None:
    s = stack
    target = {
        "subject": "rec.{call_id}.{track}",
        "eventsSubject": "rec.events.{call_id}",
        "jetstream": {"stream": "REC", "maxAge": "24h"},
    }
    s.kubectl("apply", "-f", "-", input=manifest("durable", target))
    obj = await s.wait_condition("durable", status="True")
    ready = condition(obj, "StreamReady")
    assert ready is not None and ready["status"] == "True" and ready["reason"] == "StreamReady", ready
    config = await stream(s.nats.url, "REC")
    assert config is not None
    assert config.subjects == ["rec.*.*"]  # the events pattern rec.events.* is inside it
    assert config.max_age == 24 * 3600 and config.storage == StorageType.FILE
    table = await s.wait_table(lambda t: len(t.routes) == 1)
    assert table.routes[0].jetstream_stream == "REC"

    patch(s, "durable", {"maxAge": "48h", "maxBytes": "1Gi"})

    async def updated() -> bool:
        config = await stream(s.nats.url, "REC")
        return config is not None and config.max_age == 48 * 3600 and config.max_bytes == 1 << 30

    await eventually(updated, message="the stream updated to the new settings")
    await s.wait_condition("durable", status="True")

    patch(s, "durable", {"storage": "memory"})  # NATS cannot change a stream's storage
    obj = await s.wait_condition("durable", status="False", reason="StreamRefused")
    refused = condition(obj, "StreamReady")
    assert (
        refused is not None
        and refused["status"] == "False"
        and "NATS refused to update stream REC" in refused["message"]
    )
    assert "published in route table version" in condition(obj, "Ready")["message"]  # type: ignore[index]
    config = await stream(s.nats.url, "REC")
    assert config is not None and config.storage == StorageType.FILE
    warnings = await eventually(
        lambda: [e for e in s.events("durable") if e["reason"] == "StreamRefused"], message="a StreamRefused Event"
    )
    assert warnings[0]["type"] == "Warning"
    assert (s.metric("sgw_operator_reconciles_total", reason="stream_not_ready") or 0) >= 1

    patch(s, "durable", {"storage": "file"})
    await s.wait_condition("durable", status="True")


async def test_a_user_managed_stream_is_checked_and_never_changed(stack: OperatorStack) -> None:
    s = stack
    target = {"subject": "mine.{call_id}.{track}", "jetstream": {"stream": "MINE", "create": False}}
    s.kubectl("apply", "-f", "-", input=manifest("mine", target))
    obj = await s.wait_condition("mine", status="False", reason="StreamNotFound")
    assert await stream(s.nats.url, "MINE") is None, "create: false must never create the stream"
    assert condition(obj, "StreamReady")["reason"] == "StreamNotFound"  # type: ignore[index]

    await add_stream(s.nats.url, "MINE", ["mine.*.*"])  # by hand, without the events subject
    obj = await s.wait_condition("mine", status="False", reason="SubjectsNotCovered")
    assert "events.*" in condition(obj, "StreamReady")["message"]  # type: ignore[index]

    await add_stream(s.nats.url, "MINE", ["mine.>", "events.*"], update=True)
    await s.wait_condition("mine", status="True")
    config = await stream(s.nats.url, "MINE")
    assert config is not None and config.subjects == ["mine.>", "events.*"] and not config.description


async def test_a_stream_is_deleted_only_with_delete_policy_and_only_once_unused(stack: OperatorStack) -> None:
    s = stack
    for name, jetstream in (
        ("keep", {"stream": "KEEP"}),
        ("drop", {"stream": "DROP", "deletePolicy": "Delete"}),
        ("owner", {"stream": "SHARED", "deletePolicy": "Delete"}),
        ("user", {"stream": "SHARED", "create": False}),
    ):
        target = {"subject": f"{name}.{{call_id}}.{{track}}", "eventsSubject": f"{name}.ev.{{call_id}}"}
        s.kubectl("apply", "-f", "-", input=manifest(name, {**target, "jetstream": jetstream}))
    for name in ("keep", "drop", "owner", "user"):
        await s.wait_condition(name, status="True")
    shared = await stream(s.nats.url, "SHARED")
    assert shared is not None and sorted(shared.subjects or []) == ["owner.*.*", "user.*.*"]

    s.kubectl("delete", "sr/keep", "sr/drop", "sr/owner", timeout=90)
    assert await stream(s.nats.url, "KEEP") is not None, "Retain (the default) never deletes recorded audio"
    assert await stream(s.nats.url, "DROP") is None
    assert await stream(s.nats.url, "SHARED") is not None, "a stream another route still uses stays"
    await s.wait_condition("user", status="True")

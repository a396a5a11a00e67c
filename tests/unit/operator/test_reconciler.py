"""The reconcile loop with an in-memory API and sink: what gets published, patched and posted."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from sgw_operator.errors import KubeApiError
from sgw_operator.kube import KubeApi
from sgw_operator.metrics import OperatorMetrics
from sgw_operator.model import RouteSnapshot
from sgw_operator.reconciler import Reconciler
from sgw_operator.sink import MemoryTableSink, TableSink
from sgw_routes.credentials import hash_basic, twilio_key
from sgw_routes.model import RoutingTable, hash_token
from tests.unit.operator.conftest import secret_obj, snap, with_basic, with_secret, with_twilio

NOW = "2026-03-01T00:00:00Z"


class FakeKube:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.statuses: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str, str]] = []
        self.reads = 0
        self.patches = 0
        self.routes_exist = False
        self.fail_reads = False
        self.fail_events = False
        self.gone: set[str] = set()

    async def read_secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        self.reads += 1
        if self.fail_reads:
            raise KubeApiError(500, "etcd is sad")
        return self.secrets.get((namespace, name))

    async def patch_route_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        if f"{namespace}/{name}" in self.gone:
            return False
        self.patches += 1
        self.statuses[f"{namespace}/{name}"] = dict(status)
        return True

    async def post_event(self, route: Mapping[str, str], *, type_: str, reason: str, message: str) -> None:
        if self.fail_events:
            raise KubeApiError(403, "events are forbidden")
        self.events.append((route["name"], type_, reason))

    async def any_routes(self, namespaces: Sequence[str]) -> bool:
        return self.routes_exist

    def ready(self, key: str) -> tuple[str, str]:
        cond = {c["type"]: c for c in self.statuses[key]["conditions"]}["Ready"]
        return cond["status"], cond["reason"]


class World:
    """A reconciler over a dict "index" the test edits, as kopf's index would be."""

    def __init__(self, sink: TableSink | None = None) -> None:
        self.kube = FakeKube()
        self.sink: Any = sink if sink is not None else MemoryTableSink()
        self.metrics = OperatorMetrics(CollectorRegistry())
        self.index: dict[str, list[RouteSnapshot]] = {}
        self.rec = Reconciler(kube=self.kube, sink=self.sink, metrics=self.metrics, clock=lambda: NOW, backoff=(0.01,))
        self.rec.attach(self.index)

    def put(self, *snaps: RouteSnapshot) -> None:
        for s in snaps:
            self.index[s.key] = [s]
        self.rec.trigger()

    def remove(self, key: str) -> None:
        self.index.pop(key, None)
        self.rec.trigger()

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels or None)

    @property
    def table(self) -> RoutingTable:
        assert self.sink.published is not None
        return self.sink.published  # type: ignore[no-any-return]


def _conformance(kube: FakeKube, sink: MemoryTableSink) -> tuple[KubeApi, TableSink]:
    return kube, sink  # the fakes satisfy the Protocols the reconciler needs (checked by mypy)


async def test_first_round_publishes_and_reports_every_route() -> None:
    w = World()
    w.put(snap("a", {"match": {"controlId": "a-*"}}), snap("bad", {"match": {"controlId": "[x"}}))
    assert await w.rec.reconcile()
    assert [r.name for r in w.table.routes] == ["voice/a"]
    assert w.table.version == 1
    assert w.kube.ready("voice/a") == ("True", "Ready")
    assert w.kube.statuses["voice/a"]["table"] == {"version": 1}
    assert w.kube.statuses["voice/a"]["observedGeneration"] == 1
    assert w.kube.ready("voice/bad") == ("False", "InvalidPattern")
    assert sorted(w.kube.events) == [("a", "Normal", "Ready"), ("bad", "Warning", "InvalidPattern")]
    assert w.metric("sgw_operator_routes") == 1
    assert w.metric("sgw_operator_table_version") == 1
    assert w.metric("sgw_operator_table_publishes_total", reason="ok") == 1
    assert w.metric("sgw_operator_reconciles_total", reason="accepted") == 1
    assert w.metric("sgw_operator_reconciles_total", reason="invalid") == 1


async def test_nothing_changed_means_no_publish_and_no_patch() -> None:
    w = World()
    w.put(snap("a"))
    assert await w.rec.reconcile()
    patches, events = w.kube.patches, len(w.kube.events)
    w.rec.trigger()
    assert await w.rec.reconcile()
    assert len(w.sink.history) == 1
    assert (w.kube.patches, len(w.kube.events)) == (patches, events)


async def test_a_change_to_one_route_updates_the_status_of_another() -> None:
    w = World()
    same = {"match": {"controlId": "x-*"}}
    w.put(snap("a", same, created="2026-01-01T00:00:00Z"))
    assert await w.rec.reconcile()
    w.put(snap("b", same, created="2026-02-01T00:00:00Z"))
    assert await w.rec.reconcile()
    assert w.kube.ready("voice/b") == ("False", "Conflicted")
    assert w.kube.ready("voice/a") == ("True", "Ready")
    assert len(w.sink.history) == 1  # the table did not change

    w.put(snap("b", {**same, "priority": 1}, created="2026-02-01T00:00:00Z", generation=2))
    assert await w.rec.reconcile()
    assert w.kube.ready("voice/b") == ("True", "Ready")
    assert w.kube.statuses["voice/b"]["observedGeneration"] == 2
    assert w.kube.ready("voice/a") == ("False", "Conflicted")
    assert [r.name for r in w.table.routes] == ["voice/b"]
    assert ("a", "Warning", "Conflicted") in w.kube.events

    w.remove("voice/b")
    assert await w.rec.reconcile()
    assert w.kube.ready("voice/a") == ("True", "Ready")


async def test_secrets_are_read_once_and_reread_after_a_change() -> None:
    w = World()
    w.put(snap("s", with_secret("tok")))
    assert await w.rec.reconcile()
    assert w.kube.ready("voice/s") == ("False", "SecretNotFound")
    assert not w.table.routes

    w.kube.secrets[("voice", "tok")] = secret_obj("tok", {"token": b"one"})
    w.rec.secret_changed("voice", "tok")
    assert await w.rec.reconcile()
    assert w.kube.ready("voice/s") == ("True", "Ready")
    assert w.table.routes[0].token_sha256 == hash_token("one")
    reads = w.kube.reads

    w.rec.trigger()
    assert await w.rec.reconcile()
    assert w.kube.reads == reads  # cached

    w.kube.secrets[("voice", "tok")] = secret_obj("tok", {"token": b"two"})
    w.rec.secret_changed("voice", "tok")
    assert await w.rec.reconcile()
    assert w.table.routes[0].token_sha256 == hash_token("two")
    assert w.table.version == 3  # empty, one, two


async def test_basic_auth_and_twilio_secrets_are_followed_through_create_change_delete() -> None:
    w = World()
    w.put(snap("exotel", with_basic("exotel-auth", match={"controlId": "ex-*"})))
    w.put(snap("twilio", with_twilio("twilio-auth", match={"controlId": "tw-*"})))
    assert await w.rec.reconcile()
    assert w.kube.ready("voice/exotel") == ("False", "SecretNotFound")
    assert w.kube.ready("voice/twilio") == ("False", "SecretNotFound")

    w.kube.secrets[("voice", "exotel-auth")] = secret_obj("exotel-auth", {"username": b"key", "password": b"one"})
    w.kube.secrets[("voice", "twilio-auth")] = secret_obj("twilio-auth", {"token": b"first"})
    w.rec.secret_changed("voice", "exotel-auth")
    w.rec.secret_changed("voice", "twilio-auth")
    assert await w.rec.reconcile()
    by_name = {r.name: r for r in w.table.routes}
    assert by_name["voice/exotel"].basic_sha256 == hash_basic("key", "one")
    assert by_name["voice/twilio"].twilio_key == twilio_key("first")

    w.kube.secrets[("voice", "exotel-auth")] = secret_obj("exotel-auth", {"username": b"key", "password": b"two"})
    w.kube.secrets[("voice", "twilio-auth")] = secret_obj("twilio-auth", {"token": b"second"})
    w.rec.secret_changed("voice", "exotel-auth")
    w.rec.secret_changed("voice", "twilio-auth")
    assert await w.rec.reconcile()
    by_name = {r.name: r for r in w.table.routes}
    assert by_name["voice/exotel"].basic_sha256 == hash_basic("key", "two")
    assert by_name["voice/twilio"].twilio_key == twilio_key("second")

    del w.kube.secrets[("voice", "exotel-auth")]
    w.rec.secret_changed("voice", "exotel-auth")
    assert await w.rec.reconcile()
    assert [r.name for r in w.table.routes] == ["voice/twilio"]
    assert w.kube.ready("voice/exotel") == ("False", "SecretNotFound")
    assert ("exotel", "Warning", "SecretNotFound") in w.kube.events


async def test_a_failing_secret_read_keeps_the_live_table() -> None:
    w = World()
    w.kube.secrets[("voice", "tok")] = secret_obj("tok", {"token": b"one"})
    w.put(snap("s", with_secret("tok")))
    assert await w.rec.reconcile()
    w.kube.fail_reads = True
    w.rec.secret_changed("voice", "tok")
    assert not await w.rec.reconcile()
    assert [r.name for r in w.table.routes] == ["voice/s"]
    assert w.kube.ready("voice/s") == ("True", "Ready")
    assert w.metric("sgw_operator_reconcile_errors_total", reason="kubernetes") == 1
    assert w.metric("sgw_operator_reconciles_total", reason="error") == 1


async def test_publish_failure_reports_only_unpublished_routes_and_recovers() -> None:
    sink = MemoryTableSink()
    w = World(sink)
    w.put(snap("live"))
    assert await w.rec.reconcile()
    sink.fail = True
    w.put(snap("new", {"match": {"controlId": "new-*"}}))
    assert not await w.rec.reconcile()
    assert w.kube.ready("voice/new") == ("False", "PublishFailed")
    assert w.kube.ready("voice/live") == ("True", "Ready")
    assert w.metric("sgw_operator_table_publishes_total", reason="error") == 1
    assert w.metric("sgw_operator_reconcile_errors_total", reason="nats") == 1
    sink.fail = False
    assert await w.rec.reconcile()
    assert w.kube.ready("voice/new") == ("True", "Ready")
    assert w.kube.statuses["voice/new"]["table"] == {"version": 2}
    assert w.kube.statuses["voice/live"]["table"] == {"version": 1}  # its form is unchanged since 1


async def test_wait_removed_needs_a_later_successful_publish() -> None:
    sink = MemoryTableSink()
    w = World(sink)
    w.put(snap("a"), snap("b", {"match": {"controlId": "b"}}))
    assert await w.rec.reconcile()
    w.put(snap("b", {"match": {"controlId": "b"}}, deleting=True))
    ticket = w.rec.trigger()
    assert not await w.rec.wait_removed("voice/b", ticket, timeout=0.01)  # no round yet
    sink.fail = True
    assert not await w.rec.reconcile()
    assert not await w.rec.wait_removed("voice/b", ticket, timeout=0.01)
    sink.fail = False
    waiter = asyncio.create_task(w.rec.wait_removed("voice/b", ticket, timeout=5))
    assert await w.rec.reconcile()
    assert await waiter
    assert [r.name for r in w.table.routes] == ["voice/a"]


async def test_statuses_of_vanished_routes_and_failed_events_do_not_fail_a_round() -> None:
    w = World()
    w.kube.gone.add("voice/a")
    w.kube.fail_events = True
    w.put(snap("a"), snap("b", {"match": {"controlId": "b"}}))
    assert await w.rec.reconcile()
    assert "voice/a" not in w.kube.statuses
    assert w.kube.ready("voice/b") == ("True", "Ready")


async def test_restart_with_the_same_table_changes_nothing() -> None:
    w = World()
    w.put(snap("a"), snap("b", {"match": {"controlId": "b"}}))
    assert await w.rec.reconcile()
    w.put(snap("b", {"match": {"controlId": "b-*"}}, generation=2))
    assert await w.rec.reconcile()
    assert w.table.version == 2

    # A new operator: the table comes from the sink, the statuses from the objects.
    fresh = World(MemoryTableSink(initial=w.table))
    for key, [old] in w.index.items():
        fresh.index[key] = [snap(old.name, _spec_of(old), generation=old.generation, status=w.kube.statuses[key])]
    fresh.rec.trigger()
    assert await fresh.rec.reconcile()
    assert fresh.sink.history == []
    assert fresh.kube.patches == 0
    assert fresh.kube.events == []


def _spec_of(s: RouteSnapshot) -> dict[str, Any]:
    assert s.spec is not None
    return {"match": {"controlId": s.spec.control_id}}


async def test_run_loop_bootstraps_an_empty_table_and_retries_failures() -> None:
    sink = MemoryTableSink()
    w = World(sink)
    w.rec = Reconciler(kube=w.kube, sink=sink, metrics=w.metrics, clock=lambda: NOW, backoff=(0.01,))
    task = asyncio.create_task(w.rec.run())
    try:
        for _ in range(500):
            if sink.published is not None:
                break
            await asyncio.sleep(0.01)
        assert sink.published == RoutingTable(version=1)

        sink.fail = True
        w.rec.attach(w.index)
        w.put(snap("a"))
        for _ in range(500):
            if w.rec.failed_rounds >= 2:
                break
            await asyncio.sleep(0.01)
        assert w.rec.failed_rounds >= 2  # retried on its own, with backoff
        sink.fail = False
        for _ in range(500):
            if [r.name for r in w.table.routes] == ["voice/a"]:
                break
            await asyncio.sleep(0.01)
        assert [r.name for r in w.table.routes] == ["voice/a"]
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_bootstrap_waits_for_kopf_when_routes_exist() -> None:
    w = World()
    w.kube.routes_exist = True
    w.rec = Reconciler(kube=w.kube, sink=w.sink, metrics=w.metrics, clock=lambda: NOW)
    task = asyncio.create_task(w.rec.run())
    try:
        for _ in range(20):
            await asyncio.sleep(0)
        assert w.sink.published is None
        assert w.rec.rounds == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_nats_down_at_start_up_leaves_ready_routes_alone() -> None:
    ready = {
        "observedGeneration": 1,
        "conditions": [
            {"type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "lastTransitionTime": NOW},
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": NOW},
        ],
        "table": {"version": 3},
    }
    sink = MemoryTableSink()
    sink.fail = True
    w = World(sink)
    w.put(
        snap("live", status=ready),
        snap("new", {"match": {"controlId": "new"}}),
        snap("bad", {"match": {"controlId": "["}}),
    )
    assert not await w.rec.reconcile()
    assert "voice/live" not in w.kube.statuses  # unknown, not lost: no flapping during an outage
    assert w.kube.ready("voice/new") == ("False", "PublishFailed")
    assert w.kube.ready("voice/bad") == ("False", "InvalidPattern")

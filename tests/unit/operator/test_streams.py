"""Durable routes' streams, decided without NATS: what each stream should be, who owns it, and the
``StreamReady``/``Ready`` conditions a route gets. The NATS side runs against a real nats-server in
``tests/integration/operator/test_operator_streams.py``."""

from __future__ import annotations

from typing import Any

from nats.js.api import RetentionPolicy, StorageType, StreamConfig

from sgw_operator import status
from sgw_operator.model import Outcome
from sgw_operator.streams import STREAM_CONFLICT, StreamOutcome, differences, plan, stream_config
from sgw_routes.manifest import StreamRouteSpec
from sgw_routes.model import Route
from tests.unit.operator.conftest import snap


def durable(
    name: str, jetstream: dict[str, Any], *, created: str = "2026-01-01T00:00:00Z", **target: str
) -> StreamRouteSpec:
    spec = snap(name, {"target": {**target, "jetstream": jetstream}}, created=created).spec
    assert spec is not None
    return spec


def test_a_stream_covers_the_audio_and_events_of_every_route_using_it() -> None:
    a = durable("a", {"stream": "REC"}, subject="rec.{call_id}.{track}", eventsSubject="recev.{call_id}")
    b = durable("b", {"stream": "REC", "create": False}, subject="rec2.{route}.{call_id}.{track}")
    plain = snap("plain", {"target": {"subject": "x.{call_id}.{track}"}}).spec
    assert plain is not None
    desired, conflicts = plan([a, b, plain])
    assert conflicts == {} and list(desired) == ["REC"]
    rec = desired["REC"]
    assert rec.subjects == ("events.*", "rec.*.*", "rec2.*.*.*", "recev.*")
    assert rec.routes == ("voice/a", "voice/b") and rec.owner == "voice/a" and rec.settings.create


def test_the_oldest_creating_route_owns_the_settings_and_a_different_ask_is_a_conflict() -> None:
    old = durable("old", {"stream": "REC", "maxAge": "24h"}, created="2026-01-01T00:00:00Z")
    new = durable("new", {"stream": "REC", "maxAge": "48h"}, created="2026-02-01T00:00:00Z")
    same = durable("same", {"stream": "REC", "maxAge": "24h", "deletePolicy": "Delete"}, created="2026-03-01T00:00:00Z")
    desired, conflicts = plan([new, same, old])
    assert desired["REC"].owner == "voice/old" and desired["REC"].settings.max_age == 24 * 3600
    assert list(conflicts) == ["voice/new"] and conflicts["voice/new"].reason == STREAM_CONFLICT
    assert "voice/old" in conflicts["voice/new"].message


def test_only_user_managed_routes_make_a_checked_stream() -> None:
    a = durable("a", {"stream": "MINE", "create": False})
    desired, _ = plan([a])
    assert not desired["MINE"].settings.create


def test_the_nats_configuration_and_what_differs() -> None:
    spec = durable(
        "a",
        {
            "stream": "REC",
            "maxAge": "1h",
            "maxBytes": "1Gi",
            "replicas": 3,
            "storage": "memory",
            "duplicateWindow": "5m",
        },
    )
    desired, _ = plan([spec])
    want = stream_config(desired["REC"])
    assert want.subjects == ["audio.*.*", "events.*"] and want.storage is StorageType.MEMORY
    assert want.retention is RetentionPolicy.LIMITS and want.num_replicas == 3
    assert want.max_age == 3600 and want.max_bytes == 1 << 30 and want.duplicate_window == 300
    assert want.description is not None and "voice/a" in want.description
    same = StreamConfig(
        name="REC",
        subjects=["events.*", "audio.*.*"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.MEMORY,
        num_replicas=3,
        max_age=3600.0,
        max_bytes=1 << 30,
        duplicate_window=300.0,
    )
    assert differences(same, want) == []
    other = StreamConfig(name="REC", subjects=["audio.>"], storage=StorageType.FILE, max_bytes=-1, duplicate_window=120)
    assert differences(other, want) == [
        "subjects",
        "retention",
        "storage",
        "num_replicas",
        "max_age",
        "max_bytes",
        "duplicate_window",
    ]


def test_defaults_compare_equal_to_what_nats_reports() -> None:
    desired, _ = plan([durable("a", {"stream": "REC"})])
    want = stream_config(desired["REC"])
    reported = StreamConfig(
        name="REC",
        subjects=["audio.*.*", "events.*"],
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        num_replicas=1,
        max_age=0.0,
        max_bytes=-1,
        duplicate_window=120.0,  # the server's default window: not ours to change
    )
    assert differences(reported, want) == []


def _desired(stream: StreamOutcome | None, *, published: bool = True) -> dict[str, Any]:
    route = Route(name="voice/a", jetstream_stream="REC")
    return status.desired(
        Outcome(reason="Accepted", message="the spec is valid", accepted=True, route=route),
        generation=2,
        current={},
        published=published,
        since_version=7 if published else None,
        publish_error=None,
        now="2026-01-01T00:00:00Z",
        stream=stream,
    )


def test_a_ready_stream_adds_its_condition_and_keeps_the_route_ready() -> None:
    want = _desired(StreamOutcome(True, "StreamReady", "stream REC covers audio.*.*, events.*"))
    conditions = status.conditions_by_type(want)
    assert conditions["Ready"]["status"] == "True" and want["table"] == {"version": 7}
    assert conditions["StreamReady"]["status"] == "True" and conditions["StreamReady"]["reason"] == "StreamReady"
    assert status.metric_reason(want) == "accepted"


def test_a_stream_that_is_not_ready_makes_the_route_not_ready_with_its_reason() -> None:
    want = _desired(StreamOutcome(False, "StreamNotFound", "stream REC does not exist"))
    conditions = status.conditions_by_type(want)
    assert conditions["StreamReady"]["status"] == "False" and conditions["StreamReady"]["reason"] == "StreamNotFound"
    assert conditions["Ready"]["status"] == "False" and conditions["Ready"]["reason"] == "StreamNotFound"
    assert "stream REC does not exist" in conditions["Ready"]["message"] and want["table"] is None
    assert status.metric_reason(want) == "stream_not_ready"
    event = status.ready_event({}, want)
    assert event is not None and event.type == "Warning" and event.reason == "StreamNotFound"


def test_a_route_without_a_stream_has_no_stream_condition() -> None:
    assert "StreamReady" not in status.conditions_by_type(_desired(None))

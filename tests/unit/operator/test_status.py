"""Pure status builders: conditions, lastTransitionTime, observedGeneration, Events, metric reasons."""

from __future__ import annotations

from typing import Any

import pytest

from sgw_operator import status
from sgw_operator.model import CONFLICTED, SECRET_NOT_FOUND, Outcome
from sgw_routes.model import Route

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"
ACCEPTED = Outcome(reason="Accepted", message="the spec is valid", accepted=True, route=Route(name="voice/a"))
CONFLICT = Outcome(reason=CONFLICTED, message="StreamRoute voice/b wins", accepted=False)
NO_SECRET = Outcome(reason=SECRET_NOT_FOUND, message="Secret voice/t does not exist", accepted=True)


def build(outcome: Outcome, current: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "generation": 1,
        "current": current or {},
        "published": True,
        "since_version": 4,
        "publish_error": None,
        "now": T0,
    }
    args.update(kw)
    return status.desired(outcome, **args)


def by_type(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in st["conditions"]}


def test_ready_route() -> None:
    st = build(ACCEPTED)
    assert st["observedGeneration"] == 1
    assert st["table"] == {"version": 4}
    conds = by_type(st)
    assert conds["Accepted"] == {
        "type": "Accepted",
        "status": "True",
        "reason": "Accepted",
        "message": "the spec is valid",
        "lastTransitionTime": T0,
        "observedGeneration": 1,
    }
    assert conds["Ready"]["status"] == "True"
    assert conds["Ready"]["reason"] == "Ready"
    assert "version 4" in conds["Ready"]["message"]


def test_conflicted_route_is_neither_accepted_nor_ready_and_names_no_table() -> None:
    st = build(CONFLICT, published=False, since_version=None)
    conds = by_type(st)
    assert (conds["Accepted"]["status"], conds["Accepted"]["reason"]) == ("False", CONFLICTED)
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", CONFLICTED)
    assert conds["Accepted"]["message"] == "StreamRoute voice/b wins"
    assert st["table"] is None  # deletes the field in a merge patch


def test_secret_problem_is_accepted_but_not_ready() -> None:
    conds = by_type(build(NO_SECRET, published=False, since_version=None))
    assert conds["Accepted"]["status"] == "True"
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", SECRET_NOT_FOUND)


def test_valid_but_unpublished_route_reports_publish_failed() -> None:
    conds = by_type(build(ACCEPTED, published=False, since_version=None, publish_error="nats: timeout"))
    assert (conds["Ready"]["status"], conds["Ready"]["reason"]) == ("False", status.PUBLISH_FAILED)
    assert "nats: timeout" in conds["Ready"]["message"]


def test_last_transition_time_moves_only_when_the_status_flips() -> None:
    first = build(NO_SECRET, published=False, since_version=None, now=T0)
    # Same status, new reason and generation: the transition time stays.
    again = build(CONFLICT, first, published=False, since_version=None, now=T1, generation=2)
    assert by_type(again)["Ready"]["lastTransitionTime"] == T0
    assert by_type(again)["Ready"]["observedGeneration"] == 2
    # Accepted flipped True -> False: it moves.
    assert by_type(again)["Accepted"]["lastTransitionTime"] == T1
    ready = build(ACCEPTED, again, now=T1)
    assert by_type(ready)["Ready"]["lastTransitionTime"] == T1


def test_owned_normalises_for_comparison() -> None:
    st = build(ACCEPTED)
    assert status.owned({**st, "kopf": {"x": 1}}) == st
    assert status.owned({}) == {"observedGeneration": None, "conditions": [], "table": None}
    assert build(ACCEPTED, st, now=T1) == st  # nothing changed: nothing to patch


def test_ready_event_only_on_status_or_reason_change() -> None:
    new = build(NO_SECRET, published=False, since_version=None)
    assert status.ready_event({}, new) == status.EventSpec("Warning", SECRET_NOT_FOUND, "Secret voice/t does not exist")
    assert status.ready_event(new, build(NO_SECRET, new, published=False, since_version=None, generation=2)) is None
    ready = build(ACCEPTED, new)
    event = status.ready_event(new, ready)
    assert event is not None
    assert (event.type, event.reason) == ("Normal", "Ready")


@pytest.mark.parametrize(
    ("outcome", "kw", "reason"),
    [
        (ACCEPTED, {}, "accepted"),
        (CONFLICT, {"published": False}, "conflicted"),
        (NO_SECRET, {"published": False}, "secret_not_found"),
        (Outcome(reason="SecretKeyNotFound", message="", accepted=True), {"published": False}, "secret_not_found"),
        (Outcome(reason="InvalidPattern", message="", accepted=False), {"published": False}, "invalid"),
        (Outcome(reason="InvalidSubject", message="", accepted=False), {"published": False}, "invalid"),
        (ACCEPTED, {"published": False}, "error"),
    ],
)
def test_metric_reason(outcome: Outcome, kw: dict[str, Any], reason: str) -> None:
    assert status.metric_reason(build(outcome, **kw)) == reason


def test_since_version_prefers_what_was_recorded_at_publish_time() -> None:
    route = Route(name="voice/a", control_id="a-*")
    assert status.since_version((route, 3), route, {}, generation=1, live_version=9) == 3
    changed = Route(name="voice/a", control_id="a-?")
    ready = build(ACCEPTED, since_version=4)
    # Unknown to this run: an earlier run's record counts if it describes this generation.
    assert status.since_version((changed, 3), route, ready, generation=1, live_version=9) == 4
    assert status.since_version(None, route, ready, generation=2, live_version=9) == 9
    assert status.since_version(None, route, ready, generation=1, live_version=3) == 3
    not_ready = build(CONFLICT, published=False, since_version=None)
    assert status.since_version(None, route, not_ready, generation=1, live_version=9) == 9
    assert status.is_ready(ready)
    assert not status.is_ready(not_ready)
    assert not status.is_ready({})

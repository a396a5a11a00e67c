"""Pure status builders: an :class:`~sgw_operator.model.Outcome` plus what is published -> ``.status``.

Owns the StreamRoute status contract (docs/design.md section 4): ``observedGeneration``, the standard
``Accepted`` and ``Ready`` conditions (``lastTransitionTime`` moves only when a condition's
status flips), ``table.version`` (the route-table version in which the route's current form was
first published, so ``gateway sgw_route_table_version >= it`` means the gateway serves it), the
Event to post for a ``Ready`` transition and the metric reason of an outcome. ``now`` is passed
in; nothing here reads a clock or does I/O. Durable routes also get ``StreamReady`` (see
``sgw_operator.streams``); a route whose stream is not ready is not ``Ready`` either, with the
stream's reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from sgw_operator.model import (
    ACCEPTED,
    CONFLICTED,
    INVALID_SECRET,
    SECRET_KEY_NOT_FOUND,
    SECRET_NOT_FOUND,
    Outcome,
)
from sgw_routes.model import Route

if TYPE_CHECKING:
    from sgw_operator.streams import StreamOutcome

READY: Final = "Ready"
STREAM_READY: Final = "StreamReady"
"""The condition of a durable route's JetStream stream (its reason when True too)."""
PUBLISH_FAILED: Final = "PublishFailed"
"""Valid and accepted, but the table holding it could not be written to NATS KV (yet)."""

_METRIC_REASONS: Final = {
    READY: "accepted",
    CONFLICTED: "conflicted",
    SECRET_NOT_FOUND: "secret_not_found",
    SECRET_KEY_NOT_FOUND: "secret_not_found",
    INVALID_SECRET: "secret_not_found",
    PUBLISH_FAILED: "error",
    "StreamNotFound": "stream_not_ready",
    "SubjectsNotCovered": "stream_not_ready",
    "StreamRefused": "stream_not_ready",
    "StreamConflict": "stream_not_ready",
    "NatsUnavailable": "stream_not_ready",
}


class EventSpec(NamedTuple):
    """A Kubernetes Event to post on the route."""

    type: str
    reason: str
    message: str


def owned(status: Mapping[str, Any]) -> dict[str, Any]:
    """The operator-owned fields of a status, normalised for comparison with :func:`desired`."""
    return {
        "observedGeneration": status.get("observedGeneration"),
        "conditions": list(status.get("conditions") or []),
        "table": status.get("table"),
    }


def conditions_by_type(status: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    found: dict[str, Mapping[str, Any]] = {}
    for cond in status.get("conditions") or []:
        if isinstance(cond, Mapping) and isinstance(cond.get("type"), str):
            found[cond["type"]] = cond
    return found


def is_ready(status: Mapping[str, Any]) -> bool:
    ready = conditions_by_type(status).get(READY)
    return ready is not None and ready.get("status") == "True"


def condition(
    type_: str,
    ok: bool,
    reason: str,
    message: str,
    *,
    generation: int,
    previous: Mapping[str, Any] | None,
    now: str,
) -> dict[str, Any]:
    """One standard condition; keeps the previous ``lastTransitionTime`` unless the status flips."""
    status = "True" if ok else "False"
    since = now
    if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime"):
        since = str(previous["lastTransitionTime"])
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def desired(
    outcome: Outcome,
    *,
    generation: int,
    current: Mapping[str, Any],
    published: bool,
    since_version: int | None,
    publish_error: str | None,
    now: str,
    stream: StreamOutcome | None = None,
) -> dict[str, Any]:
    """The status the route should have. ``published``: its compiled form is in the KV table;
    ``stream``: how its JetStream stream is (durable routes that are served)."""
    previous = conditions_by_type(current)
    accepted_reason = ACCEPTED if outcome.accepted else outcome.reason
    accepted_message = "the spec is valid" if outcome.accepted else outcome.message
    if outcome.route is not None and published and (stream is None or stream.ok):
        ready, reason, message = True, READY, f"published in route table version {since_version}"
    elif outcome.route is not None and published and stream is not None:
        ready, reason = False, stream.reason
        message = f"published in route table version {since_version}, but its JetStream stream is not ready: "
        message += stream.message
    elif outcome.route is not None:
        ready, reason = False, PUBLISH_FAILED
        message = f"the route table could not be published to NATS KV: {publish_error or 'not connected yet'}"
    else:
        ready, reason, message = False, outcome.reason, outcome.message
    return {
        "observedGeneration": generation,
        "conditions": [
            condition(
                ACCEPTED,
                outcome.accepted,
                accepted_reason,
                accepted_message,
                generation=generation,
                previous=previous.get(ACCEPTED),
                now=now,
            ),
            condition(READY, ready, reason, message, generation=generation, previous=previous.get(READY), now=now),
            *(
                [
                    condition(
                        STREAM_READY,
                        stream.ok,
                        stream.reason,
                        stream.message,
                        generation=generation,
                        previous=previous.get(STREAM_READY),
                        now=now,
                    )
                ]
                if stream is not None
                else []
            ),
        ],
        # None deletes the field in a merge patch: a route that is not served names no table.
        "table": {"version": since_version} if ready else None,
    }


def since_version(
    known: tuple[Route, int] | None,
    route: Route,
    current: Mapping[str, Any],
    *,
    generation: int,
    live_version: int,
) -> int:
    """``table.version`` of a live route: when this exact form was first published.

    ``known`` is what this operator recorded at publish time. Unknown (the table was read at
    start-up and the route has not changed since): trust the version an earlier run wrote if it
    describes this generation, else the live version (an upper bound, still true).
    """
    if known is not None and known[0] == route:
        return known[1]
    recorded = (current.get("table") or {}).get("version")
    if (
        isinstance(recorded, int)
        and 0 < recorded <= live_version
        and is_ready(current)
        and current.get("observedGeneration") == generation
    ):
        return recorded
    return live_version


def ready_event(current: Mapping[str, Any], new: Mapping[str, Any]) -> EventSpec | None:
    """An Event when ``Ready`` changes status or reason; ``None`` when nothing worth telling changed."""
    before = conditions_by_type(current).get(READY)
    after = conditions_by_type(new)[READY]
    if before is not None and (before.get("status"), before.get("reason")) == (after["status"], after["reason"]):
        return None
    kind = "Normal" if after["status"] == "True" else "Warning"
    return EventSpec(kind, str(after["reason"]), str(after["message"]))


def metric_reason(new: Mapping[str, Any]) -> str:
    """``reason`` label of ``sgw_operator_reconciles_total`` for a status just written."""
    reason = conditions_by_type(new)[READY]["reason"]
    return _METRIC_REASONS.get(str(reason), "invalid")

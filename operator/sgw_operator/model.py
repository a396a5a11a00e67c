"""Pure reconcile model: StreamRoute objects and Secrets in, the desired route table out.

Owns what the operator decides and nothing it does: snapshots of StreamRoute objects (validated
once, when an event arrives), Secret contents reduced to the stored forms of credentials (token
and ``username:password`` hashes, Twilio HMAC key schedules: ``sgw_routes.credentials``; the
Secret itself is dropped), and :func:`evaluate`,
which recomputes the whole table from ALL current routes through ``sgw_routes.compile`` (so a
restart converges to the same table) and gives every route an :class:`Outcome`. No kopf, no
I/O, no clock: the reconciler feeds it and ``status`` turns outcomes into conditions.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any, Final

import msgspec

from sgw_routes.compile import RouteSecrets, compile_table
from sgw_routes.credentials import BASIC_PASSWORD_KEY, BASIC_USERNAME_KEY, hash_basic, twilio_key
from sgw_routes.manifest import InvalidRoute, StreamRouteSpec, parse_streamroute
from sgw_routes.model import Route, RoutingTable, hash_token

ACCEPTED: Final = "Accepted"
CONFLICTED: Final = "Conflicted"
SECRET_NOT_FOUND: Final = "SecretNotFound"
SECRET_KEY_NOT_FOUND: Final = "SecretKeyNotFound"
INVALID_SECRET: Final = "InvalidSecret"
"""The key exists but cannot be a credential (empty after stripping, not UTF-8, a Basic user name
with a colon). An empty token is refused rather than hashed: the hash of "" would let an empty
bearer token in."""

SecretKey = tuple[str, str]
"""(namespace, Secret name)."""

_OWNED_STATUS_FIELDS: Final = ("observedGeneration", "conditions", "table")


class RouteSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What the operator keeps of one StreamRoute object (the value of its kopf index)."""

    namespace: str
    name: str
    uid: str = ""
    generation: int = 0
    deleting: bool = False
    spec: StreamRouteSpec | None = None
    """The validated spec; ``None`` when the object is invalid (see ``invalid_reason``)."""
    invalid_reason: str = ""
    invalid_message: str = ""
    status: dict[str, Any] = {}
    """The operator-owned part of ``.status`` as last seen on the object."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def snapshot(body: Mapping[str, Any]) -> RouteSnapshot:
    """Validate one StreamRoute object (as received from the API) into a :class:`RouteSnapshot`."""
    meta = body.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    status = body.get("status") or {}
    generation = meta.get("generation")
    common: dict[str, Any] = {
        "namespace": namespace,
        "name": str(meta.get("name") or ""),
        "uid": str(meta.get("uid") or ""),
        "generation": generation if isinstance(generation, int) else 0,
        "deleting": bool(meta.get("deletionTimestamp")),
        # A deep copy: kopf may reuse the body it handed to the index handler.
        "status": {k: msgspec.json.decode(msgspec.json.encode(status[k])) for k in _OWNED_STATUS_FIELDS if k in status},
    }
    try:
        spec = parse_streamroute(body, default_namespace=namespace)
    except InvalidRoute as exc:
        return RouteSnapshot(**common, invalid_reason=exc.reason, invalid_message=exc.message)
    except (TypeError, ValueError, AttributeError) as exc:
        # Whatever slipped past the schema must still become a status, never a lost route.
        return RouteSnapshot(**common, invalid_reason="InvalidSpec", invalid_message=f"unreadable spec: {exc}")
    return RouteSnapshot(**common, spec=spec)


def secret_refs(body: Mapping[str, Any]) -> set[SecretKey]:
    """The Secrets a StreamRoute object references, read leniently (for the Secret watch filter):
    ``bearerTokenSecretRef``, ``basicAuthSecretRef`` and ``twilioSignature.authTokenSecretRef``."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    auth = spec.get("auth") if isinstance(spec, Mapping) else None
    if not isinstance(auth, Mapping):
        return set()
    twilio = auth.get("twilioSignature")
    refs = (
        auth.get("bearerTokenSecretRef"),
        auth.get("basicAuthSecretRef"),
        twilio.get("authTokenSecretRef") if isinstance(twilio, Mapping) else None,
    )
    namespace = str(meta.get("namespace") or "default")
    names = (ref.get("name") if isinstance(ref, Mapping) else None for ref in refs)
    return {(namespace, name) for name in names if isinstance(name, str) and name}


class SecretState(msgspec.Struct, frozen=True, kw_only=True):
    """A Secret reduced to what routing may need: the stored forms of each usable key, and of its
    ``username``/``password`` pair. Never holds a token or a password."""

    found: bool
    hashes: dict[str, str] = {}
    """Key -> SHA-256 of its value (a bearer token)."""
    twilio_keys: dict[str, str] = {}
    """Key -> HMAC-SHA1 key schedule of its value (a Twilio auth token)."""
    basic_sha256: str | None = None
    """SHA-256 of ``username:password`` when both keys are usable."""
    problems: dict[str, str] = {}
    """Keys that exist but hold no usable value -> why (``username`` also when it holds a colon)."""


def secret_state(secret: Mapping[str, Any] | None) -> SecretState:
    """Reduce every key of a Secret as the gateway's file mode does (trailing whitespace stripped)."""
    if secret is None:
        return SecretState(found=False)
    values: dict[str, str] = {}
    problems: dict[str, str] = {}
    for key, encoded in (secret.get("data") or {}).items():
        try:
            value = base64.b64decode(str(encoded or ""), validate=True).decode("utf-8").rstrip()
        except (binascii.Error, UnicodeDecodeError):
            problems[key] = "is not UTF-8 text"
            continue
        if value:
            values[key] = value
        else:
            problems[key] = "is empty"
    basic = None
    username, password = values.get(BASIC_USERNAME_KEY), values.get(BASIC_PASSWORD_KEY)
    if username is not None and password is not None:
        try:
            basic = hash_basic(username, password)
        except ValueError:
            problems[BASIC_USERNAME_KEY] = "contains ':', which HTTP Basic cannot carry in a user name"
    return SecretState(
        found=True,
        hashes={key: hash_token(value) for key, value in values.items()},
        twilio_keys={key: twilio_key(value) for key, value in values.items()},
        basic_sha256=basic,
        problems=problems,
    )


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """The decision for one route: ``reason`` is ``Accepted`` or why the route is not served."""

    reason: str
    message: str
    accepted: bool
    """The spec is valid and not conflicted (the ``Accepted`` condition)."""
    route: Route | None = None
    """The compiled route when it belongs in the table."""


class Evaluation(msgspec.Struct, frozen=True):
    table: RoutingTable
    """The desired table (``version`` 0: the sink assigns versions)."""
    outcomes: dict[str, Outcome]
    """Route key (``namespace/name``) -> outcome, for every route not being deleted."""


def referenced_secrets(snapshots: Iterable[RouteSnapshot]) -> set[SecretKey]:
    return {
        (s.namespace, name) for s in snapshots if not s.deleting and s.spec is not None for name in s.spec.secret_names
    }


class _Unresolved(Exception):
    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


def _lookup(
    spec: StreamRouteSpec, secrets: Mapping[SecretKey, SecretState], name: str, keys: Iterable[str]
) -> SecretState:
    """The Secret, checked to exist and to hold every one of ``keys`` usably."""
    state = secrets.get((spec.namespace, name))
    where = f"Secret {spec.namespace}/{name}"
    if state is None or not state.found:
        raise _Unresolved(Outcome(reason=SECRET_NOT_FOUND, message=f"{where} does not exist", accepted=True))
    for key in keys:
        if key in state.problems:
            message = f"key {key!r} of {where} {state.problems[key]}"
            raise _Unresolved(Outcome(reason=INVALID_SECRET, message=message, accepted=True))
        if key not in state.hashes:
            message = f"{where} has no key {key!r}"
            raise _Unresolved(Outcome(reason=SECRET_KEY_NOT_FOUND, message=message, accepted=True))
    return state


def _resolve(spec: StreamRouteSpec, secrets: Mapping[SecretKey, SecretState]) -> RouteSecrets:
    """The route's credentials in stored form; raises :class:`_Unresolved` with the first problem."""
    bearer = basic = twilio = None
    if spec.secret_ref is not None:
        bearer = _lookup(spec, secrets, spec.secret_ref.name, [spec.secret_ref.key]).hashes[spec.secret_ref.key]
    if spec.basic_secret is not None:
        basic = _lookup(spec, secrets, spec.basic_secret, [BASIC_USERNAME_KEY, BASIC_PASSWORD_KEY]).basic_sha256
    if spec.twilio_ref is not None:
        ref = spec.twilio_ref
        twilio = _lookup(spec, secrets, ref.name, [ref.key]).twilio_keys[ref.key]
    return RouteSecrets(token_sha256=bearer, basic_sha256=basic, twilio_key=twilio)


def conflict_message(loser: Route, winner: Route) -> str:
    """Say which route won an identical match block, and by which precedence rule."""
    if winner.priority != loser.priority:
        why = f"higher priority ({winner.priority} > {loser.priority})"
    elif winner.created != loser.created and winner.created and loser.created:
        why = f"it is older (created {winner.created})"
    else:
        why = "name order"
    return f"StreamRoute {winner.name} has an identical match block and takes precedence: {why}"


def evaluate(snapshots: Iterable[RouteSnapshot], secrets: Mapping[SecretKey, SecretState]) -> Evaluation:
    """Recompute the whole table and every route's outcome. Deterministic in its inputs."""
    outcomes: dict[str, Outcome] = {}
    specs: list[StreamRouteSpec] = []
    resolved: dict[str, RouteSecrets] = {}
    for snap in sorted(snapshots, key=lambda s: s.key):
        if snap.deleting:
            continue
        if snap.spec is None:
            outcomes[snap.key] = Outcome(reason=snap.invalid_reason, message=snap.invalid_message, accepted=False)
            continue
        try:
            resolved[snap.spec.key] = _resolve(snap.spec, secrets)
        except _Unresolved as exc:
            outcomes[snap.key] = exc.outcome
            continue
        specs.append(snap.spec)
    compiled = compile_table(specs, resolved, version=0)
    by_name = {route.name: route for route in compiled.table.routes}
    losers = {spec.key: spec for spec in specs if spec.key in compiled.conflicts}
    for spec in specs:
        if spec.key in losers:
            winner = by_name[compiled.conflicts[spec.key]]
            loser = Route(name=spec.key, priority=spec.priority, created=spec.created)
            outcomes[spec.key] = Outcome(reason=CONFLICTED, message=conflict_message(loser, winner), accepted=False)
        else:
            outcomes[spec.key] = Outcome(
                reason=ACCEPTED, message="the spec is valid", accepted=True, route=by_name[spec.key]
            )
    return Evaluation(table=compiled.table, outcomes=outcomes)


def same_content(a: RoutingTable | None, b: RoutingTable | None) -> bool:
    """Equal tables apart from ``version``: republishing such a table would change nothing."""
    if a is None or b is None:
        return a is b
    return a.routes == b.routes and a.default == b.default

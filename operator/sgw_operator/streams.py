"""The JetStream streams of durable routes: what they should be (:func:`plan`) and making them so.

Every served route with ``spec.target.jetstream`` names a stream. Routes sharing a stream share
it: its subjects capture all their patterns (each template with every placeholder token turned
into ``*``, audio and events; overlapping patterns merged, as NATS requires). With ``create:
true`` on any of them, the operator owns the stream: it creates it, or updates it when its
subjects or settings differ, following the oldest such route (creation time, then name); another
owning route asking for different settings gets ``StreamConflict``. With ``create: false`` on all
of them, the stream is the user's: it must exist and cover each route's patterns, and is never
changed. Each route gets a :class:`StreamOutcome`, the ``StreamReady`` condition of its status.
Streams are deleted only on route deletion, only with ``deletePolicy: Delete``, and only once no
remaining route uses them.

NATS is reached through the route table sink's connection (:meth:`NatsKvSink.jetstream`): one
connection, the same credentials. A refusal by NATS (a storage type that cannot change, a
cluster too small for the replicas) is ``StreamRefused`` with NATS's description; NATS being
unreachable is ``NatsUnavailable``, and the round is retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Final, Protocol

import msgspec
import nats.errors
import nats.js.errors
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext

from sgw_operator.errors import SinkUnavailable
from sgw_routes.jetstream import StreamSettings, covers, stream_subjects, subject_pattern
from sgw_routes.manifest import StreamRouteSpec

logger = logging.getLogger(__name__)

STREAM_READY: Final = "StreamReady"
STREAM_NOT_FOUND: Final = "StreamNotFound"
SUBJECTS_NOT_COVERED: Final = "SubjectsNotCovered"
STREAM_REFUSED: Final = "StreamRefused"
STREAM_CONFLICT: Final = "StreamConflict"
NATS_UNAVAILABLE: Final = "NatsUnavailable"
_DESCRIPTION: Final = "stream-gateway durable route {owner} (managed by sgw-operator)"
_NATS_ERRORS: Final = (nats.errors.Error, TimeoutError, OSError)


class StreamOutcome(msgspec.Struct, frozen=True):
    """The ``StreamReady`` condition of one route."""

    ok: bool
    reason: str
    message: str


class DesiredStream(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    settings: StreamSettings
    """The owning route's settings (``create`` false: nobody owns it)."""
    subjects: tuple[str, ...]
    """Capturing every pattern of every route using it (:func:`stream_subjects`)."""
    routes: tuple[str, ...]
    owner: str
    """The route whose settings the stream follows (the first route when nobody owns it)."""


def route_patterns(spec: StreamRouteSpec) -> tuple[str, ...]:
    """The subjects a route publishes on, as wildcard patterns (audio, events)."""
    return tuple(dict.fromkeys((subject_pattern(spec.subject), subject_pattern(spec.events_subject))))


def plan(specs: Iterable[StreamRouteSpec]) -> tuple[dict[str, DesiredStream], dict[str, StreamOutcome]]:
    """The streams the durable routes among ``specs`` need, and the routes refused for asking
    something else of a stream another route owns (route key -> ``StreamConflict``)."""
    by_stream: dict[str, list[StreamRouteSpec]] = {}
    for spec in specs:
        if spec.jetstream is not None:
            by_stream.setdefault(spec.jetstream.stream, []).append(spec)
    desired: dict[str, DesiredStream] = {}
    conflicts: dict[str, StreamOutcome] = {}
    for name, routes in sorted(by_stream.items()):
        routes.sort(key=lambda s: (s.created or "~", s.key))
        owners = [s for s in routes if s.jetstream is not None and s.jetstream.create]
        lead = owners[0] if owners else routes[0]
        assert lead.jetstream is not None
        for spec in owners[1:]:
            assert spec.jetstream is not None
            if not spec.jetstream.same_stream_as(lead.jetstream):
                conflicts[spec.key] = StreamOutcome(
                    False,
                    STREAM_CONFLICT,
                    f"stream {name} follows the settings of StreamRoute {lead.key} (the oldest route that creates "
                    "it); give both routes the same settings, or create: false on this one",
                )
        subjects = stream_subjects(pattern for spec in routes for pattern in route_patterns(spec))
        desired[name] = DesiredStream(
            name=name,
            settings=lead.jetstream,
            subjects=subjects,
            routes=tuple(s.key for s in routes),
            owner=lead.key,
        )
    return desired, conflicts


def stream_config(stream: DesiredStream) -> StreamConfig:
    """The NATS configuration of a stream the operator owns."""
    s = stream.settings
    return StreamConfig(
        name=stream.name,
        description=_DESCRIPTION.format(owner=stream.owner),
        subjects=list(stream.subjects),
        retention=RetentionPolicy(s.retention),
        storage=StorageType(s.storage),
        num_replicas=s.replicas,
        max_age=s.max_age,
        max_bytes=s.max_bytes if s.max_bytes is not None else -1,
        duplicate_window=s.duplicate_window if s.duplicate_window is not None else 0,
    )


def differences(have: StreamConfig, want: StreamConfig) -> list[str]:
    """The settings in which the stream NATS has differs from the one wanted (a zero or ``None``
    duplicate window / max age on our side means the server's default: not compared)."""
    changed = []
    if sorted(have.subjects or []) != sorted(want.subjects or []):
        changed.append("subjects")
    for field in ("retention", "storage", "num_replicas"):
        if getattr(have, field) != getattr(want, field):
            changed.append(field)
    if (have.max_age or 0) != (want.max_age or 0):
        changed.append("max_age")
    if (have.max_bytes if have.max_bytes is not None else -1) != want.max_bytes:
        changed.append("max_bytes")
    if want.duplicate_window and have.duplicate_window != want.duplicate_window:
        changed.append("duplicate_window")
    return changed


def _describe(stream: DesiredStream) -> str:
    return f"stream {stream.name} covers {', '.join(stream.subjects)}"


class StreamManager(Protocol):
    """What the reconciler needs: make the streams so, delete the ones let go."""

    async def ensure(self, specs: Sequence[StreamRouteSpec]) -> dict[str, StreamOutcome]:
        """Every durable route among ``specs`` (the served ones) -> its ``StreamReady``. Raises
        :class:`SinkUnavailable` when NATS cannot be reached."""
        ...

    async def remove(self, deleted: Sequence[StreamRouteSpec], kept: Sequence[StreamRouteSpec]) -> list[str]:
        """Delete the streams of ``deleted`` routes with ``deletePolicy: Delete`` that no ``kept``
        route uses; returns their names."""
        ...


class NatsStreams:
    def __init__(self, jetstream: Callable[[], JetStreamContext | None]) -> None:
        self._jetstream = jetstream

    def _js(self) -> JetStreamContext:
        js = self._jetstream()
        if js is None:
            raise SinkUnavailable("not connected to NATS")
        return js

    async def ensure(self, specs: Sequence[StreamRouteSpec]) -> dict[str, StreamOutcome]:
        desired, outcomes = plan(specs)
        if not desired:
            return outcomes
        js = self._js()
        for stream in desired.values():
            try:
                if stream.settings.create:
                    result = await self._apply(js, stream)
                    for key in stream.routes:
                        outcomes.setdefault(key, result)
                else:
                    for key, result in (await self._check(js, stream, specs)).items():
                        outcomes.setdefault(key, result)
            except _NATS_ERRORS as exc:
                raise SinkUnavailable(f"JetStream stream {stream.name}: {type(exc).__name__}: {exc}") from None
        return outcomes

    async def _info(self, js: JetStreamContext, name: str) -> StreamConfig | None:
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            return None
        return info.config

    async def _apply(self, js: JetStreamContext, stream: DesiredStream) -> StreamOutcome:
        want = stream_config(stream)
        have = await self._info(js, stream.name)
        try:
            if have is None:
                await js.add_stream(want)
                logger.info(
                    "created JetStream stream %s (%s) for %s", stream.name, ", ".join(stream.subjects), stream.owner
                )
            elif changed := differences(have, want):
                await js.update_stream(want)
                logger.info("updated JetStream stream %s (%s) for %s", stream.name, ", ".join(changed), stream.owner)
        except nats.js.errors.APIError as exc:
            verb = "create" if have is None else "update"
            return StreamOutcome(
                False, STREAM_REFUSED, f"NATS refused to {verb} stream {stream.name}: {exc.description}"
            )
        return StreamOutcome(True, STREAM_READY, _describe(stream))

    async def _check(
        self, js: JetStreamContext, stream: DesiredStream, specs: Sequence[StreamRouteSpec]
    ) -> dict[str, StreamOutcome]:
        """A stream the user manages: it must exist and cover each route's patterns."""
        have = await self._info(js, stream.name)
        outcomes: dict[str, StreamOutcome] = {}
        for spec in specs:
            if spec.key not in stream.routes:
                continue
            if have is None:
                outcomes[spec.key] = StreamOutcome(
                    False,
                    STREAM_NOT_FOUND,
                    f"stream {stream.name} does not exist (create: false: create it, or let the operator)",
                )
                continue
            subjects = have.subjects or []
            missing = [p for p in route_patterns(spec) if not any(covers(s, p) for s in subjects)]
            if missing:
                outcomes[spec.key] = StreamOutcome(
                    False,
                    SUBJECTS_NOT_COVERED,
                    f"stream {stream.name} ({', '.join(subjects) or 'no subjects'}) does not cover "
                    f"{', '.join(missing)}: those messages would be refused",
                )
            else:
                outcomes[spec.key] = StreamOutcome(
                    True, STREAM_READY, f"stream {stream.name} covers {', '.join(route_patterns(spec))}"
                )
        return outcomes

    async def remove(self, deleted: Sequence[StreamRouteSpec], kept: Sequence[StreamRouteSpec]) -> list[str]:
        used = {s.jetstream.stream for s in kept if s.jetstream is not None}
        names = sorted(
            {
                s.jetstream.stream
                for s in deleted
                if s.jetstream is not None and s.jetstream.create and s.jetstream.delete_policy == "Delete"
            }
            - used
        )
        if not names:
            return []
        js = self._js()
        removed = []
        for name in names:
            try:
                await js.delete_stream(name)
            except nats.js.errors.NotFoundError:
                continue  # deleted already (an earlier round, or by hand)
            except _NATS_ERRORS as exc:
                raise SinkUnavailable(f"deleting JetStream stream {name}: {type(exc).__name__}: {exc}") from None
            logger.info("deleted JetStream stream %s (deletePolicy: Delete, no route uses it any more)", name)
            removed.append(name)
        return removed


def unavailable(specs: Iterable[StreamRouteSpec], message: str) -> dict[str, StreamOutcome]:
    """Every durable route's outcome while NATS cannot be reached."""
    outcome = StreamOutcome(False, NATS_UNAVAILABLE, f"the stream could not be checked: {message}")
    return {s.key: outcome for s in specs if s.jetstream is not None}

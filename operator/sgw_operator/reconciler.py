"""The reconcile loop: one task that turns "something changed" into a published table and statuses.

kopf handlers only call :meth:`Reconciler.trigger` (and a deletion waits in
:meth:`Reconciler.wait_removed`). Triggers coalesce: a round always starts from ALL current
StreamRoutes (the kopf index, complete before any handler runs, so a restart converges), reads
the referenced Secrets it has not cached, evaluates (``model``), creates or updates the JetStream
streams of the durable routes it serves (``streams``), writes the table to the sink when its
content changed, deletes the streams that deleted routes let go (``deletePolicy: Delete``), then
patches the ``/status`` of every route whose status differs
(including routes whose conflict appeared or vanished because of another route) and posts an
Event per ``Ready`` transition. A failed round leaves the live table as it was and is retried
with backoff. No clocks or API shapes leak into ``model``/``status``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from sgw_operator import status
from sgw_operator.errors import KubeApiError, SinkUnavailable
from sgw_operator.kube import KubeApi
from sgw_operator.metrics import OperatorMetrics
from sgw_operator.model import (
    Evaluation,
    RouteSnapshot,
    SecretKey,
    SecretState,
    evaluate,
    referenced_secrets,
    same_content,
    secret_state,
)
from sgw_operator.sink import TableSink
from sgw_operator.streams import StreamManager, StreamOutcome, unavailable
from sgw_routes.manifest import StreamRouteSpec
from sgw_routes.model import Route, RoutingTable

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_BACKOFF: Final = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
RouteIndex = Mapping[Any, Iterable[RouteSnapshot]]
"""The kopf index of StreamRoutes (key -> store of snapshots), or any mapping shaped like it."""


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def bounded(limit: int, jobs: Iterable[Awaitable[T]]) -> list[T | BaseException]:
    """Await ``jobs`` at most ``limit`` at a time (API calls: do not flood the API server)."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Awaitable[T]) -> T:
        async with gate:
            return await job

    return await asyncio.gather(*(one(job) for job in jobs), return_exceptions=True)


class Reconciler:
    def __init__(
        self,
        *,
        kube: KubeApi,
        sink: TableSink,
        metrics: OperatorMetrics,
        namespaces: Sequence[str] = (),
        clock: Callable[[], str] = utc_now,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        concurrency: int = 8,
        streams: StreamManager | None = None,
        stream_recheck: float = 30.0,
    ) -> None:
        self._kube = kube
        self._sink = sink
        self._metrics = metrics
        self._namespaces = tuple(namespaces)
        self._clock = clock
        self._backoff = tuple(backoff)
        self._concurrency = concurrency
        self._streams = streams
        self._stream_recheck = stream_recheck
        self._recheck: asyncio.TimerHandle | None = None
        self._routes: RouteIndex | None = None
        self._secrets: dict[SecretKey, SecretState] = {}
        self._secret_epochs: dict[SecretKey, int] = {}
        self._written: dict[str, tuple[str, dict[str, Any]]] = {}
        self._since: dict[str, tuple[Route, int]] = {}
        self._requested = 0
        self._table_ok = 0
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._done = asyncio.Condition()
        self.rounds = 0
        self.failed_rounds = 0

    @property
    def published(self) -> RoutingTable | None:
        return self._sink.published

    def attach(self, routes: RouteIndex) -> None:
        """Use this live index of all StreamRoutes (kopf calls handlers only once it is complete)."""
        self._routes = routes

    def trigger(self) -> int:
        """Ask for a round; returns a ticket that a round starting from now on will cover."""
        self._requested += 1
        self._wake.set()
        return self._requested

    def secret_changed(self, namespace: str, name: str) -> int:
        key = (namespace, name)
        self._secrets.pop(key, None)
        self._secret_epochs[key] = self._secret_epochs.get(key, 0) + 1
        return self.trigger()

    async def wait_removed(self, key: str, ticket: int, timeout: float) -> bool:
        """Wait until a table without route ``key`` is live, from a round covering ``ticket``."""

        def removed() -> bool:
            live = self._sink.published
            return self._table_ok >= ticket and live is not None and all(r.name != key for r in live.routes)

        async with self._done:
            try:
                await asyncio.wait_for(self._done.wait_for(removed), timeout)
            except TimeoutError:
                return False
        return True

    async def run(self) -> None:
        await self._bootstrap()
        failures = 0
        while True:
            await self._wake.wait()
            if await self.reconcile():
                failures = 0
                continue
            delay = self._backoff[min(failures, len(self._backoff) - 1)]
            failures += 1
            # Backoff between failed rounds only; the live table stays as it was meanwhile.
            await asyncio.sleep(delay)
            self._wake.set()

    async def reconcile(self) -> bool:
        """Run one round now, covering every trigger so far; ``False`` if it failed."""
        async with self._lock:  # one round at a time, even if called besides run()
            self._wake.clear()
            return await self._attempt(self._requested)

    async def _attempt(self, ticket: int) -> bool:
        try:
            await self._round(ticket)
        except (KubeApiError, SinkUnavailable) as exc:
            cause = "kubernetes" if isinstance(exc, KubeApiError) else "nats"
            self._failed(cause)
            logger.warning("reconcile failed (%s), retrying: %s", cause, exc)
            return False
        except Exception:
            self._failed("internal")
            logger.exception("reconcile failed unexpectedly, retrying")
            return False
        finally:
            async with self._done:
                self._done.notify_all()
        return True

    def _failed(self, cause: str) -> None:
        self.failed_rounds += 1
        self._metrics.reconcile_errors.labels(cause).inc()
        self._metrics.reconciles.labels("error").inc()

    async def _bootstrap(self) -> None:
        """With no StreamRoute at all kopf never calls a handler: publish the empty table anyway."""
        try:
            if await self._kube.any_routes(self._namespaces):
                return
        except Exception as exc:  # noqa: BLE001 - best effort: the first route event reconciles anyway
            logger.warning("could not list StreamRoutes at start-up (events will still reconcile): %s", exc)
            return
        if self._routes is None:
            self._routes = {}
            self.trigger()

    async def _round(self, ticket: int) -> None:
        routes = self._routes
        if routes is None:
            return  # nothing seen yet: never publish a table from a partial view
        self.rounds += 1
        snapshots = [snap for store in routes.values() for snap in store]
        live = [snap for snap in snapshots if not snap.deleting]
        secrets = await self._load_secrets(referenced_secrets(live))
        evaluation = evaluate(snapshots, secrets)
        specs = [snap.spec for snap in live if snap.spec is not None]
        served = [spec for spec in specs if evaluation.outcomes[spec.key].route is not None]
        # Streams before the table: a gateway never gets a durable route whose stream is missing.
        streams, stream_error = await self._ensure_streams(served)
        publish_error: str | None = None
        try:
            await self._publish(evaluation.table)
            self._table_ok = max(self._table_ok, ticket)
        except SinkUnavailable as exc:
            publish_error = exc.message
        if publish_error is None:
            stream_error = await self._remove_streams(snapshots, specs) or stream_error
        failures = await self._write_statuses(live, evaluation, publish_error, streams)
        if self._recheck is None and not all(outcome.ok for outcome in streams.values()):
            # Nothing in Kubernetes changes when a stream is created by hand: look again later.
            self._recheck = asyncio.get_running_loop().call_later(self._stream_recheck, self._recheck_streams)
        keys = {snap.key for snap in live}
        self._written = {k: v for k, v in self._written.items() if k in keys}
        for error in (publish_error, stream_error):
            if error is not None:
                raise SinkUnavailable(error)
        if failures:
            raise failures[0]

    def _recheck_streams(self) -> None:
        self._recheck = None
        self.trigger()

    async def _ensure_streams(self, served: list[StreamRouteSpec]) -> tuple[dict[str, StreamOutcome], str | None]:
        """The ``StreamReady`` of every served durable route; and why NATS could not be asked."""
        if self._streams is None or all(spec.jetstream is None for spec in served):
            return {}, None
        try:
            await self._open_sink()
            return await self._streams.ensure(served), None
        except SinkUnavailable as exc:
            return unavailable(served, exc.message), exc.message

    async def _load_secrets(self, needed: set[SecretKey]) -> dict[SecretKey, SecretState]:
        self._secrets = {k: v for k, v in self._secrets.items() if k in needed}
        self._secret_epochs = {k: v for k, v in self._secret_epochs.items() if k in needed}
        missing = sorted(needed - self._secrets.keys())
        epochs = {key: self._secret_epochs.get(key, 0) for key in missing}
        bodies = await bounded(self._concurrency, [self._kube.read_secret(ns, name) for ns, name in missing])
        found = dict(self._secrets)
        for key, body in zip(missing, bodies, strict=True):
            if isinstance(body, BaseException):
                # Keep the live table rather than drop routes over a transient API error.
                raise body if isinstance(body, KubeApiError) else KubeApiError(0, f"reading Secret: {body}")
            found[key] = secret_state(body)  # reduced to stored forms here, the body dropped
            if self._secret_epochs.get(key, 0) == epochs[key]:
                self._secrets[key] = found[key]  # else it changed meanwhile: re-read next round
        return found

    async def _remove_streams(self, snapshots: list[RouteSnapshot], kept: list[StreamRouteSpec]) -> str | None:
        """Delete the streams deleted routes let go (after the table without them is live)."""
        deleted = [snap.spec for snap in snapshots if snap.deleting and snap.spec is not None]
        if self._streams is None or not deleted:
            return None
        try:
            await self._streams.remove(deleted, kept)
        except SinkUnavailable as exc:
            return exc.message
        return None

    async def _open_sink(self) -> None:
        if not self._sink.is_open:
            try:
                await self._sink.open()
            except SinkUnavailable:
                self._metrics.table_publishes.labels("error").inc()
                raise
            self._gauges(self._sink.published)

    async def _publish(self, table: RoutingTable) -> None:
        await self._open_sink()
        previous = self._sink.published
        if same_content(previous, table):
            return
        try:
            written = await self._sink.publish(table)
        except SinkUnavailable:
            self._metrics.table_publishes.labels("error").inc()
            raise
        self._metrics.table_publishes.labels("ok").inc()
        self._gauges(written)
        before = {r.name: r for r in previous.routes} if previous is not None else {}
        for route in written.routes:
            if before.get(route.name) != route:
                self._since[route.name] = (route, written.version)
        logger.info("published route table version %d: %d routes", written.version, len(written.routes))

    def _gauges(self, table: RoutingTable | None) -> None:
        if table is not None:
            self._metrics.routes.set(len(table.routes))
            self._metrics.table_version.set(table.version)

    def _current(self, snap: RouteSnapshot) -> Mapping[str, Any]:
        """Our last write if it is for this very object (the watch may lag behind it)."""
        written = self._written.get(snap.key)
        if written is not None and written[0] == snap.uid:
            return written[1]
        return snap.status

    async def _write_statuses(
        self,
        live: list[RouteSnapshot],
        evaluation: Evaluation,
        publish_error: str | None,
        streams: Mapping[str, StreamOutcome],
    ) -> list[KubeApiError]:
        table = self._sink.published
        served = {r.name: r for r in table.routes} if table is not None else {}
        self._since = {name: v for name, v in self._since.items() if name in served}
        now = self._clock()
        jobs: list[Awaitable[None]] = []
        for snap in live:
            outcome = evaluation.outcomes[snap.key]
            current = self._current(snap)
            since = None
            route = outcome.route
            if table is None and route is not None and status.is_ready(current):
                continue  # NATS never reached since start-up: what is live is unknown, not lost
            if table is not None and route is not None and served.get(route.name) == route:
                since = status.since_version(
                    self._since.get(route.name), route, current, generation=snap.generation, live_version=table.version
                )
                self._since[route.name] = (route, since)
            want = status.desired(
                outcome,
                generation=snap.generation,
                current=current,
                published=since is not None,
                since_version=since,
                publish_error=publish_error,
                now=now,
                stream=streams.get(snap.key) if route is not None else None,
            )
            if status.owned(current) != want:
                jobs.append(self._write(snap, current, want))
        results = await bounded(self._concurrency, jobs)
        errors: list[KubeApiError] = []
        for result in results:
            if isinstance(result, KubeApiError):
                errors.append(result)
            elif isinstance(result, BaseException):
                errors.append(KubeApiError(0, f"{type(result).__name__}: {result}"))
        return errors

    async def _write(self, snap: RouteSnapshot, current: Mapping[str, Any], want: dict[str, Any]) -> None:
        if not await self._kube.patch_route_status(snap.namespace, snap.name, want):
            return  # deleted meanwhile; its DELETED event triggers the next round
        self._written[snap.key] = (snap.uid, want)
        self._metrics.reconciles.labels(status.metric_reason(want)).inc()
        event = status.ready_event(current, want)
        if event is None:
            return
        logger.info("StreamRoute %s: %s: %s", snap.key, event.reason, event.message)
        ref = {"namespace": snap.namespace, "name": snap.name, "uid": snap.uid}
        try:
            await self._kube.post_event(ref, type_=event.type, reason=event.reason, message=event.message)
        except KubeApiError as exc:
            # Events are best effort: the status already says it all.
            logger.warning("could not post an Event on StreamRoute %s: %s", snap.key, exc)

"""kopf wiring: thin handlers that feed the reconciler, registered by :func:`build_registry`.

Two kopf indices hold every StreamRoute (validated snapshots) and which Secrets they reference
(every auth kind: bearer token, basic-auth, Twilio auth token);
kopf runs no handler before both are complete after (re)listing, which is what lets each round
recompute the table from ALL routes. Any StreamRoute event triggers a round; a deletion holds the
finalizer until a table without the route is live; events on Secrets that some route references
(the index decides, other Secrets are ignored) drop the cached hash and trigger a round.
``startup`` builds the runtime (settings, metrics, NATS sink, API client, reconciler task) into
kopf's memo and ``cleanup`` tears it down. Handlers are registered into a registry passed in, not
at import, so tests can run several operators in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from typing import Any, Final

import kopf
from prometheus_client import CollectorRegistry

from sgw_operator.errors import ConfigError
from sgw_operator.kube import COMPONENT, GROUP, PLURAL, VERSION, HttpKubeApi, connection_info
from sgw_operator.metrics import MetricsServer, OperatorMetrics
from sgw_operator.model import RouteSnapshot, secret_refs, snapshot
from sgw_operator.reconciler import Reconciler
from sgw_operator.settings import OperatorSettings, load_settings
from sgw_operator.sink import NatsKvSink
from sgw_operator.streams import NatsStreams

logger = logging.getLogger(__name__)

FINALIZER: Final = f"{GROUP}/route-table"
"""Held by every StreamRoute until a table without it is live in NATS KV."""
_MEMO_KEY: Final = "sgw_runtime"
_USERINFO: Final = re.compile(r"//[^/@]*@")
"""Credentials embedded in a NATS URL (nats://user:pass@host) never reach the log."""


@dataclasses.dataclass
class Runtime:
    """Everything one running operator owns; lives in kopf's memo (no module-level state)."""

    settings: OperatorSettings
    metrics: OperatorMetrics
    metrics_server: MetricsServer
    kube: HttpKubeApi
    sink: NatsKvSink
    reconciler: Reconciler
    task: asyncio.Task[None]


def runtime(memo: kopf.Memo) -> Runtime:
    found = memo.get(_MEMO_KEY)
    if not isinstance(found, Runtime):
        raise kopf.TemporaryError("the operator runtime is not started yet", delay=1)
    return found


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Our own finalizer and annotation names, and kopf's Events only for its failures."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = COMPONENT
    settings.posting.event_name_prefix = f"{COMPONENT}-"


async def start_runtime(
    kopf_settings: kopf.OperatorSettings,
    memo: kopf.Memo,
    *,
    settings: OperatorSettings | None,
    metrics_registry: CollectorRegistry | None,
) -> Runtime:
    try:
        op = settings if settings is not None else load_settings()
    except ConfigError as exc:
        raise kopf.PermanentError(str(exc)) from None
    configure_kopf(kopf_settings)
    metrics = OperatorMetrics(metrics_registry if metrics_registry is not None else CollectorRegistry())
    server = MetricsServer(metrics.registry, host=op.listen_host, port=op.metrics_port)
    await server.start()
    kube = HttpKubeApi(lambda: connection_info(kopf_settings, kubeconfig=op.kubeconfig))
    sink = NatsKvSink(op.nats, op.kv)
    reconciler = Reconciler(
        kube=kube,
        sink=sink,
        metrics=metrics,
        namespaces=op.namespaces,
        streams=NatsStreams(sink.jetstream),
        stream_recheck=op.stream_recheck,
    )
    task = asyncio.create_task(reconciler.run(), name="sgw-reconciler")
    rt = Runtime(op, metrics, server, kube, sink, reconciler, task)
    memo[_MEMO_KEY] = rt
    logger.info(
        "sgw-operator started: namespaces=%s, KV %s/%s at %s",
        ",".join(op.namespaces) or "*",
        op.kv.bucket,
        op.kv.key,
        _USERINFO.sub("//***@", op.nats.url),
    )
    return rt


async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    rt = memo.pop(_MEMO_KEY, None)
    if not isinstance(rt, Runtime):
        return
    rt.task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await rt.task
    await rt.sink.close()
    await rt.kube.close()
    await rt.metrics_server.close()


def login(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf and the reconciler's own API client authenticate the same way."""
    rt = memo.get(_MEMO_KEY)
    kubeconfig = rt.settings.kubeconfig if isinstance(rt, Runtime) else None
    return connection_info(settings, kubeconfig=kubeconfig)


def route_table_version(memo: kopf.Memo, **_: Any) -> int | None:
    """Liveness probe: the live table's version (``None`` until NATS was reached). Fails if the
    reconcile loop died, so Kubernetes restarts an operator that would silently do nothing."""
    rt = runtime(memo)
    if rt.task.done():
        raise RuntimeError("the reconcile loop has stopped")
    table = rt.reconciler.published
    return table.version if table is not None else None


def index_routes(body: kopf.Body, **_: Any) -> dict[str, RouteSnapshot]:
    snap = snapshot(body)
    return {snap.key: snap}


def index_route_secrets(body: kopf.Body, **_: Any) -> dict[tuple[str, str], str] | None:
    meta = body.get("metadata") or {}
    route = f"{meta.get('namespace')}/{meta.get('name')}"
    return dict.fromkeys(sorted(secret_refs(body)), route) or None


def _routes(kwargs: dict[str, Any]) -> kopf.Index[str, RouteSnapshot]:
    # kopf passes indices as keyword arguments named by the index handler's id.
    index: kopf.Index[str, RouteSnapshot] = kwargs["routes"]
    return index


async def on_route_event(memo: kopf.Memo, **kwargs: Any) -> None:
    rt = runtime(memo)
    rt.reconciler.attach(_routes(kwargs))
    rt.reconciler.trigger()


async def on_route_delete(memo: kopf.Memo, namespace: str | None, name: str, **kwargs: Any) -> None:
    rt = runtime(memo)
    rt.reconciler.attach(_routes(kwargs))
    ticket = rt.reconciler.trigger()
    if not await rt.reconciler.wait_removed(f"{namespace}/{name}", ticket, rt.settings.delete_timeout):
        raise kopf.TemporaryError("the route table without this route is not live in NATS KV yet", delay=5)


def secret_is_referenced(namespace: str | None, name: str, **kwargs: Any) -> bool:
    referenced: kopf.Index[tuple[str, str], str] = kwargs["route_secrets"]
    return (namespace or "", name) in referenced


async def on_secret_event(memo: kopf.Memo, namespace: str | None, name: str, **kwargs: Any) -> None:
    rt = runtime(memo)
    rt.reconciler.attach(_routes(kwargs))
    rt.reconciler.secret_changed(namespace or "", name)


def build_registry(
    *,
    settings: OperatorSettings | None = None,
    metrics_registry: CollectorRegistry | None = None,
    registry: kopf.OperatorRegistry | None = None,
) -> kopf.OperatorRegistry:
    """Register the operator into ``registry`` (default: a new one) and return it.

    ``settings`` default: loaded from the environment at start-up. ``metrics_registry`` default:
    a fresh one (``streamgw-operator`` passes prometheus' global registry).
    """
    registry = registry if registry is not None else kopf.OperatorRegistry()

    async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        await start_runtime(settings, memo, settings=operator_settings, metrics_registry=metrics_registry)

    operator_settings = settings
    resource = (GROUP, VERSION, PLURAL)
    kopf.on.startup(registry=registry, id="startup")(startup)
    kopf.on.cleanup(registry=registry, id="cleanup")(cleanup)
    kopf.on.login(registry=registry, id="login")(login)
    kopf.on.probe(registry=registry, id="route_table_version")(route_table_version)
    kopf.index(*resource, registry=registry, id="routes")(index_routes)
    kopf.index(*resource, registry=registry, id="route_secrets")(index_route_secrets)
    kopf.on.event(*resource, registry=registry, id="route_event")(on_route_event)
    kopf.on.delete(*resource, registry=registry, id="unpublish")(on_route_delete)
    kopf.on.event("v1", "secrets", registry=registry, id="secret_event", when=secret_is_referenced)(on_secret_event)
    return registry

"""Every Prometheus metric the operator exports, and the small ``/metrics`` server.

Conventions: docs/conventions.md sections 9 and 10.

The registry is injected: ``streamgw-operator`` passes the process-wide default one, each test a
fresh one, so two operators in one test process never collide. Labels are bounded enums
(``reason``); route names never become labels here (the gateway labels by route). The server runs
on the operator's own event loop next to kopf and serves only ``GET /metrics``.
"""

from __future__ import annotations

import logging
from typing import Final

import aiohttp.web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

logger = logging.getLogger(__name__)

RECONCILE_REASONS: Final = ("accepted", "invalid", "secret_not_found", "conflicted", "stream_not_ready", "error")
ERROR_REASONS: Final = ("kubernetes", "nats", "internal")
PUBLISH_REASONS: Final = ("ok", "error")
METRIC_NAMES: Final = (
    "sgw_operator_reconciles_total",
    "sgw_operator_reconcile_errors_total",
    "sgw_operator_routes",
    "sgw_operator_table_publishes_total",
    "sgw_operator_table_version",
)


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.reconciles = Counter(
            "sgw_operator_reconciles_total",
            "StreamRoute status changes written, by outcome (accepted, invalid, secret_not_found, "
            "conflicted; stream_not_ready: a durable route's JetStream stream is missing, refused or does not cover "
            "its subjects; error: valid but the table could not be published).",
            ["reason"],
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "sgw_operator_reconcile_errors_total",
            "Reconcile rounds that failed and will be retried, by cause (kubernetes, nats, internal).",
            ["reason"],
            registry=registry,
        )
        self.routes = Gauge(
            "sgw_operator_routes",
            "Routes in the route table last published to NATS KV.",
            registry=registry,
        )
        self.table_publishes = Counter(
            "sgw_operator_table_publishes_total",
            "Writes of the route table to NATS KV, by result (ok, error).",
            ["reason"],
            registry=registry,
        )
        self.table_version = Gauge(
            "sgw_operator_table_version",
            "Version of the route table last published to (or found in) NATS KV.",
            registry=registry,
        )
        # Pre-create every label value so dashboards see zeros instead of absent series.
        for reason in RECONCILE_REASONS:
            self.reconciles.labels(reason)
        for reason in ERROR_REASONS:
            self.reconcile_errors.labels(reason)
        for reason in PUBLISH_REASONS:
            self.table_publishes.labels(reason)


class MetricsServer:
    """``GET /metrics`` on ``host:port`` (port 0: any free port; see :attr:`port` once started)."""

    def __init__(self, registry: CollectorRegistry, *, host: str, port: int) -> None:
        self._registry = registry
        self._host = host
        self._requested_port = port
        self._runner: aiohttp.web.AppRunner | None = None
        self.port = port

    async def _metrics(self, _: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = aiohttp.web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = aiohttp.web.TCPSite(self._runner, self._host, self._requested_port)
        await site.start()
        for address in self._runner.addresses:
            if isinstance(address, tuple):
                self.port = int(address[1])
                break
        logger.info("metrics on http://%s:%d/metrics", self._host, self.port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

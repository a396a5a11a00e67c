"""The gateway process: wiring at start-up, two listeners, and the staged shutdown.

Start-up resolves everything before the first byte (docs/conventions.md section 7): NATS (embedded or remote, with the
``max_payload`` check), the route source and its first table, metrics, tracing, then the public
and internal listeners. Shutdown on SIGTERM (docs/conventions.md section 8), in order:

1. readiness turns false at once, new upgrades get 503;
2. live streams continue until they end or ``shutdown.drain_seconds`` passes;
3. the rest are closed with 1001, bounded concurrency;
4. every stream buffer gets a bounded time to publish what it holds;
5. NATS is drained, listeners and the embedded broker stopped; the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import ssl

from aiohttp import web
from opentelemetry.sdk.trace import SpanProcessor
from prometheus_client import CollectorRegistry

from gateway.embedded_nats import EmbeddedNats
from gateway.errors import ConfigError
from gateway.observability.metrics import GatewayMetrics
from gateway.observability.tracing import StreamTracing, build_tracer_provider
from gateway.publish.base import Publisher
from gateway.publish.connection import NatsConnection
from gateway.publish.nats import NatsPublisher
from gateway.routing.file import FileRouteSource
from gateway.routing.natskv import NatsKvRouteSource
from gateway.routing.source import RouteSource
from gateway.routing.static import StaticRouteSource
from gateway.settings import Settings
from gateway.startup import Endpoints, print_banner, start_unless_signalled
from gateway.transport.app import HTTP_LOGGER, build_internal_app, build_public_app
from gateway.transport.context import GatewayContext
from gateway.transport.overload import Overload
from gateway.transport.port import PublicPortProtocol, websocket_protocol_factory
from gateway.transport.upgrade import listener_factory
from sgw_routes.model import RoutingTable

logger = logging.getLogger(__name__)

_FLUSH_TIMEOUT = 5.0
_PICOWS_FRAME_CAP = 1024 * 1024


class GatewayServer:
    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        span_processor: SpanProcessor | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics(registry if registry is not None else CollectorRegistry())
        self._span_processor = span_processor
        self.embedded: EmbeddedNats | None = None
        self.connection: NatsConnection | None = None
        self.ctx: GatewayContext | None = None
        self._runners: list[web.AppRunner] = []
        self._servers: list[asyncio.Server] = []
        self.endpoints: Endpoints | None = None
        self._stopped = asyncio.Event()
        self._drain_started = False

    async def start(self) -> Endpoints:
        s = self.settings
        nats_url = s.nats.url
        if s.embedded_nats:
            self.embedded = EmbeddedNats()
            await self.embedded.start()
            nats_url = self.embedded.url
        conn = self.connection = NatsConnection(s.nats, nats_url)
        await conn.connect()
        if conn.client.max_payload < s.websocket.max_frame_payload_bytes:
            raise ConfigError(
                "SGW_WEBSOCKET__MAX_FRAME_PAYLOAD_BYTES",
                f"{s.websocket.max_frame_payload_bytes} exceeds the NATS server's max_payload "
                f"{conn.client.max_payload}",
            )
        publisher = NatsPublisher(
            conn,
            confirm_timeout=s.nats.confirm_timeout,
            confirm_interval=s.nats.confirm_interval,
            flush_interval=s.nats.flush_interval,
            pending_bytes=s.nats.pending_bytes,
            ack_timeout=s.nats.jetstream_ack_timeout,
            resend_window=s.nats.resend_window,
        )
        publisher.start()
        routes = self._route_source(conn)
        tracing = StreamTracing(
            build_tracer_provider(s.observability, self._span_processor),
            recording=bool(s.observability.otlp_endpoint) or self._span_processor is not None,
        )
        ctx = self.ctx = GatewayContext(
            settings=s,
            metrics=self.metrics,
            publisher=publisher,
            routes=routes,
            tracing=tracing,
            overload=Overload(s.server.max_loop_lag, self.metrics.loop_lag),
        )
        ws = s.websocket
        timeouts = [t for t in (ws.start_timeout, ws.receive_timeout, ws.heartbeat) if t > 0]
        # A quarter of the shortest timeout, at most a second: timeouts hold to within that.
        ctx.registry.configure(self.metrics, s.buffer.max_pause, sweep_every=min(1.0, min(timeouts) / 4))
        ctx.registry.start()
        publisher.add_flow_listener(ctx.registry.on_flow)
        self._wire_metrics(ctx, conn, publisher)
        await routes.start()
        ctx.overload.start()

        tls = self._tls_context()
        ws_port = await self._listen_public(ctx, tls)
        internal_port = await self._listen(
            build_internal_app(ctx), s.server.internal_host, s.server.internal_port, None
        )
        ctx.health.started = True
        host = "127.0.0.1" if s.server.host in ("0.0.0.0", "::", "") else s.server.host  # noqa: S104
        scheme = "wss" if tls else "ws"
        self.endpoints = Endpoints(
            ws_url=f"{scheme}://{host}:{ws_port}/stream",
            internal_url=f"http://{host}:{internal_port}",
            nats_url=nats_url,
        )
        return self.endpoints

    def _route_source(self, conn: NatsConnection) -> RouteSource:
        s = self.settings
        source = s.routing_source
        if source == "file":
            assert s.routing.file is not None
            return FileRouteSource(
                s.routing.file,
                s.routing.secrets_dir,
                default=s.default_route_enabled,
                poll_interval=s.routing.file_poll_interval,
            )
        if source == "natskv":
            return NatsKvRouteSource(
                conn.client,
                bucket=s.routing.kv_bucket,
                key=s.routing.kv_key,
                default=s.default_route_enabled,
                initial_timeout=s.routing.initial_table_timeout,
            )
        return StaticRouteSource()

    def _wire_metrics(self, ctx: GatewayContext, conn: NatsConnection, publisher: NatsPublisher) -> None:
        m = self.metrics
        m.buffer_capacity.set(self.settings.buffer.max_frames)
        m.buffer_frames.set_function(lambda: float(ctx.registry.buffered_frames()))
        m.buffer_fill_max.set_function(ctx.registry.max_fill)
        m.watch_streams(ctx.registry.counted, lambda: publisher.resent, lambda: publisher.inflight)
        m.nats_connected.set(1)
        ctx.health.nats_connected = True
        ctx.health.confirm_overdue = publisher.confirm_overdue

        def on_state(state: str) -> None:
            up = state in ("connected", "reconnected")
            ctx.health.nats_connected = up
            m.nats_connected.set(1 if up else 0)
            if state == "reconnected":
                m.nats_reconnects.inc()
            logger.warning("NATS %s", state) if not up else logger.info("NATS %s", state)

        conn.add_listener(on_state)

        def on_table(table: RoutingTable) -> None:
            m.route_table_version.set(table.version)
            m.route_table_routes.set(len(table.routes))
            m.route_table_updates.labels("applied").inc()

        ctx.routes.add_listener(on_table)
        ctx.routes.add_rejection_listener(lambda _reason: m.route_table_updates.labels("invalid").inc())

    def _tls_context(self) -> ssl.SSLContext | None:
        srv = self.settings.server
        if srv.tls_cert_file is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(str(srv.tls_cert_file), str(srv.tls_key_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError("SGW_SERVER__TLS_CERT_FILE", f"cannot load certificate/key: {exc}") from None
        return ctx

    async def _listen_public(self, ctx: GatewayContext, tls: ssl.SSLContext | None) -> int:
        """The public port: picows for the WebSocket upgrades, aiohttp for the rest (``port.py``)."""
        srv, ws = self.settings.server, self.settings.websocket
        runner = web.AppRunner(
            build_public_app(ctx), handle_signals=False, access_log=None, shutdown_timeout=1.0, logger=HTTP_LOGGER
        )
        await runner.setup()
        self._runners.append(runner)
        websocket = websocket_protocol_factory(
            listener_factory(ctx),
            # The message limit is enforced by the stream, in order with the frames before it;
            # picows' own limit only caps what a peer can make it buffer.
            max_frame_size=max(_PICOWS_FRAME_CAP, 4 * ws.max_message_bytes),
        )
        http = runner.server
        assert http is not None
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                lambda: PublicPortProtocol(websocket, http),
                srv.host,
                srv.port,
                ssl=tls,
                reuse_address=True,
                reuse_port=srv.reuse_port or None,
                backlog=1024,
            )
        except OSError as exc:
            raise ConfigError("SGW_SERVER__PORT", f"cannot listen on {srv.host}:{srv.port}: {exc}") from None
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def _listen(self, app: web.Application, host: str, port: int, tls: ssl.SSLContext | None) -> int:
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0, logger=HTTP_LOGGER)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=tls, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError("SGW_SERVER__PORT", f"cannot listen on {host}:{port}: {exc}") from None
        self._runners.append(runner)
        address = runner.addresses[0]
        return int(address[1])

    @property
    def publisher(self) -> Publisher:
        assert self.ctx is not None
        return self.ctx.publisher

    async def drain_and_stop(self) -> None:
        """The SIGTERM sequence (module docstring). Safe to call twice."""
        ctx = self.ctx
        if ctx is None or self._drain_started:
            if ctx is None:
                await self.stop()
            await self._stopped.wait()
            return
        self._drain_started = True
        s = self.settings.shutdown
        ctx.health.draining = True
        self.metrics.draining.set(1)
        live = len(ctx.registry)
        logger.info("draining: %d live streams, deadline %gs", live, s.drain_seconds)
        if not await ctx.registry.wait_empty(s.drain_seconds):
            closed = await ctx.registry.close_all(s.close_concurrency)
            logger.info("drain deadline passed: closed %d streams with 1001", closed)
            # The close frames are written by the event loop: let the sockets finish closing.
            await ctx.registry.wait_empty(_FLUSH_TIMEOUT)
        await ctx.publisher.wait_idle(_FLUSH_TIMEOUT)
        abandoned = ctx.registry.abandon_held()
        if abandoned:
            logger.warning(
                "%d buffered frames could not be published before exit (counted as dropped)",
                abandoned,
            )
        await self.stop()

    async def stop(self) -> None:
        if self._stopped.is_set():
            return
        try:
            for server in self._servers:
                server.close()
            self._servers.clear()
            if self.ctx is not None:
                self.ctx.overload.stop()
                self.ctx.registry.stop()
                await self.ctx.routes.close()
                await self.ctx.publisher.close(_FLUSH_TIMEOUT)
                # The OTLP exporter flushes synchronously: keep it off the event loop.
                await asyncio.to_thread(self.ctx.tracing.shutdown)
            if self.connection is not None:
                await self.connection.close(_FLUSH_TIMEOUT)
            for runner in reversed(self._runners):
                await runner.cleanup()
            self._runners.clear()
            if self.embedded is not None:
                await self.embedded.close()
        finally:
            self._stopped.set()


async def serve(settings: Settings, *, banner: bool = True) -> int:
    """Run until SIGTERM/SIGINT, then drain. Returns the exit code."""
    server = GatewayServer(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    endpoints = await start_unless_signalled(server.start(), stop, server.stop)
    if endpoints is None:
        return 0
    # Everything built so far lives as long as the process: out of the cyclic GC's sight, a full
    # collection only walks what the streams create (it walked every start-up object before).
    gc.collect()
    gc.freeze()
    if banner:
        print_banner(settings, endpoints)
    await stop.wait()
    logger.info("signal received: draining")
    await server.drain_and_stop()
    with contextlib.suppress(NotImplementedError):
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0

"""``GET /stream`` and ``GET /stream/{control_id}``: admission, then hand the socket to the shell.

Before the 101: refuse while draining (503) or at the per-process stream limit (503, so the load
balancer retries another pod), and, when the route key is in the path, check the bearer token
against the routes that key can reach (401 before any audio). Without a path key the route is
known only at ``start``; the session checks the token there, before the first frame is accepted.
"""

from __future__ import annotations

from aiohttp import web

from gateway.protocol.session import route_candidates_accept
from gateway.transport.context import GatewayContext
from gateway.transport.keys import CONTEXT
from gateway.transport.stream import ProviderStream, bearer_token


async def stream_endpoint(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CONTEXT]
    metrics = ctx.metrics
    if ctx.health.draining:
        metrics.upgrades_rejected.labels("draining").inc()
        return web.json_response({"error": "draining"}, status=503, headers={"Retry-After": "1"})
    if not ctx.routes.has_table:  # KV source before the operator wrote a table: let another pod take it
        metrics.upgrades_rejected.labels("no_route_table").inc()
        return web.json_response({"error": "no route table yet"}, status=503, headers={"Retry-After": "1"})
    if len(ctx.registry) >= ctx.settings.server.max_streams:
        metrics.upgrades_rejected.labels("stream_limit").inc()
        return web.json_response({"error": "stream limit reached"}, status=503, headers={"Retry-After": "1"})
    token = bearer_token(request)
    path_key = request.match_info.get("control_id")
    if path_key is not None and not route_candidates_accept(ctx.routes.snapshot(), path_key, token):
        reason = "invalid" if token else "missing"
        metrics.auth_failures.labels(reason).inc()
        metrics.upgrades_rejected.labels("unauthorized").inc()
        return web.json_response({"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": "Bearer"})

    ws_cfg = ctx.settings.websocket
    ws = web.WebSocketResponse(
        # aiohttp refuses a frame of exactly max_msg_size bytes (its check is ``>=``); the setting
        # promises the largest message *accepted*, so its own value must still pass.
        max_msg_size=ws_cfg.max_message_bytes + 1,
        heartbeat=ws_cfg.heartbeat,
        autoping=True,
        compress=False,  # providers do not negotiate compression; skip the per-message cost
    )
    await ws.prepare(request)
    stream = ProviderStream(ctx, ws, path_key=path_key, token=token)
    ctx.registry.add(stream)
    metrics.connections_active.inc()
    try:
        await stream.run()
    finally:
        metrics.connections_active.dec()
        ctx.registry.remove(stream)
        _finish_pump_in_background(ctx, stream)
    return ws


def _finish_pump_in_background(ctx: GatewayContext, stream: ProviderStream) -> None:
    """The socket is gone; the buffer keeps publishing (e.g. through an outage) until empty."""
    registry = ctx.registry
    pump = stream.pump

    async def finish() -> None:
        try:
            await pump.close(None)
        finally:
            registry.pump_done(pump)

    registry.track_task(finish())

"""The internal port: ``/metrics`` (Prometheus text), ``/healthz`` (alive), ``/readyz`` (ready)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.transport.keys import CONTEXT


async def metrics_endpoint(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    body = generate_latest(ctx.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ctx = request.app[CONTEXT]
    reasons = ctx.health.reasons(ctx.routes)
    ctx.metrics.ready.set(0 if reasons else 1)
    if reasons:
        return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
    return web.json_response({"status": "ready", "streams": len(ctx.registry)})

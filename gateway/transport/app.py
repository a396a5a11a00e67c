"""Builds the two aiohttp applications: public (WebSockets, status callbacks) and internal."""

from __future__ import annotations

from aiohttp import web

from gateway.transport.context import GatewayContext
from gateway.transport.health import healthz, metrics_endpoint, readyz
from gateway.transport.keys import CONTEXT
from gateway.transport.status import status_endpoint
from gateway.transport.ws_handler import stream_endpoint


def build_public_app(ctx: GatewayContext) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[CONTEXT] = ctx
    app.router.add_get("/stream", stream_endpoint)
    app.router.add_get("/stream/{control_id}", stream_endpoint)
    app.router.add_post("/status", status_endpoint)
    app.router.add_get("/status", status_endpoint)
    return app


def build_internal_app(ctx: GatewayContext) -> web.Application:
    app = web.Application()
    app[CONTEXT] = ctx
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app

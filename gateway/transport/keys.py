"""Typed application keys: every dependency the handlers reach through ``request.app``."""

from __future__ import annotations

from aiohttp import web

from gateway.transport.context import GatewayContext

CONTEXT = web.AppKey("context", GatewayContext)

"""Builds the two aiohttp applications: public (status callbacks; the WebSocket upgrades on the
same port go to picows, see :mod:`gateway.transport.port`) and internal (metrics, probes).

Also owns :data:`HTTP_LOGGER`, the logger the server hands to aiohttp's request handlers.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.transport.context import GatewayContext
from gateway.transport.health import healthz, metrics_endpoint, readyz
from gateway.transport.keys import CONTEXT
from gateway.transport.status import STATUS_AUTH, status_auth, status_endpoint

HTTP_LOGGER: Final = logging.getLogger("gateway.transport.http")
"""aiohttp's request-handler logger (``AppRunner(logger=HTTP_LOGGER)``)."""


def _client_errors_at_debug(record: logging.LogRecord) -> bool:
    """aiohttp logs every malformed request (oversized header, bad request line) at ERROR with a
    traceback. The client got its 400 and nothing on our side failed, so any peer could otherwise
    fill the log and trip error alerts at will: such records become one DEBUG line."""
    exc = record.exc_info[1] if record.exc_info else None
    if not isinstance(exc, HttpProcessingError) or record.levelno < logging.ERROR:
        return True
    record.levelno, record.levelname = logging.DEBUG, "DEBUG"
    record.msg = f"{record.msg} (client error %s: %s)"
    record.args = (*(record.args if isinstance(record.args, tuple) else ()), exc.code, exc.message[:200])
    record.exc_info = record.exc_text = None
    return HTTP_LOGGER.isEnabledFor(logging.DEBUG)


HTTP_LOGGER.addFilter(_client_errors_at_debug)


def build_public_app(ctx: GatewayContext) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[CONTEXT] = ctx
    app[STATUS_AUTH] = status_auth(ctx.settings)
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

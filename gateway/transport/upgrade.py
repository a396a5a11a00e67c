"""Admission of ``GET /stream`` and ``GET /stream/{control_id}``: decided before the 101.

picows hands every upgrade request to :func:`listener_factory`'s function before it answers. Refused
with 503 (so the load balancer tries another pod): while draining, before the first route table,
while the process is saturated (event-loop lag over ``server.max_loop_lag``), and at the stream
limit. With the route key in the path, the bearer token is checked against every route that key
can reach: 401 before any audio. Without a path key the route is known only at ``start``; the
session checks the token there, before the first frame is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final
from urllib.parse import unquote, urlsplit

from picows import WSListener, WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener

from gateway.protocol.session import route_candidates_accept
from gateway.transport.context import GatewayContext
from gateway.transport.stream import ProviderStream

_JSON_HEADERS: Final = {"Content-Type": "application/json"}
_RETRY: Final = {**_JSON_HEADERS, "Retry-After": "1"}

ListenerFactory = Callable[[WSUpgradeRequest], WSListener | WSUpgradeResponseWithListener | None]


def _refuse(status: int, error: str, headers: dict[str, str]) -> WSUpgradeResponseWithListener:
    body = json.dumps({"error": error}).encode()
    return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(status, body, headers), None)


def bearer_token(header: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None if absent or another scheme."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def listener_factory(ctx: GatewayContext) -> ListenerFactory:
    metrics = ctx.metrics

    def admit(request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener | None:
        path = urlsplit(request.path.decode("latin-1")).path
        if path == "/stream":
            path_key = None
        elif path.startswith("/stream/") and "/" not in path[len("/stream/") :] and len(path) > len("/stream/"):
            path_key = unquote(path[len("/stream/") :])
        else:
            return None  # picows answers 404
        if ctx.health.draining:
            metrics.upgrades_rejected.labels("draining").inc()
            return _refuse(503, "draining", _RETRY)
        if not ctx.routes.has_table:  # KV source before the operator wrote a table: another pod
            metrics.upgrades_rejected.labels("no_route_table").inc()
            return _refuse(503, "no route table yet", _RETRY)
        if ctx.overload.saturated:
            metrics.upgrades_rejected.labels("overloaded").inc()
            return _refuse(503, "overloaded", _RETRY)
        if len(ctx.registry) >= ctx.settings.server.max_streams:
            metrics.upgrades_rejected.labels("stream_limit").inc()
            return _refuse(503, "stream limit reached", _RETRY)
        token = bearer_token(request.headers.get("Authorization"))
        if path_key is not None and not route_candidates_accept(ctx.routes.snapshot(), path_key, token):
            metrics.auth_failures.labels("invalid" if token else "missing").inc()
            metrics.upgrades_rejected.labels("unauthorized").inc()
            return _refuse(401, "unauthorized", {**_JSON_HEADERS, "WWW-Authenticate": "Bearer"})
        return ProviderStream(ctx, path_key=path_key, token=token)

    return admit

"""Admission of ``GET /stream`` and ``GET /stream/{control_id}``: decided before the 101.

picows hands every upgrade request to :func:`listener_factory`'s function before it answers. Refused
with 503 (so the load balancer tries another pod): while draining, before the first route table,
while the process is saturated (event-loop lag over ``server.max_loop_lag``), and at the stream
limit. ``?provider=NAME`` forces the stream's dialect (an unknown name is a 400). The request's
credentials are read once here (``gateway.protocol.auth``: bearer token, Basic, Twilio signature)
and handed to the stream. With the route key in the path they are checked against every route
that key can reach: 401 before any audio, with a ``WWW-Authenticate`` challenge per kind those
routes accept. Without a path key the route is known only at ``start``; the session checks the
credentials there, before the first frame is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

from picows import WSListener, WSUpgradeRequest, WSUpgradeResponse, WSUpgradeResponseWithListener

from gateway.protocol.auth import candidates_accept, challenge, read_credentials
from gateway.protocol.dialects import DIALECTS, SUBPROTOCOLS
from gateway.transport.context import GatewayContext
from gateway.transport.stream import ProviderStream

_JSON_HEADERS: Final = {"Content-Type": "application/json"}
_RETRY: Final = {**_JSON_HEADERS, "Retry-After": "1"}

ListenerFactory = Callable[[WSUpgradeRequest], WSListener | WSUpgradeResponseWithListener | None]


def _refuse(status: int, error: str, headers: dict[str, str]) -> WSUpgradeResponseWithListener:
    body = json.dumps({"error": error}).encode()
    return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(status, body, headers), None)


def _subprotocol(header: str | None) -> str | None:
    """The first offered subprotocol some dialect speaks (others are not echoed: RFC 6455 4.2.2)."""
    for offered in (header or "").split(","):
        if offered.strip() in SUBPROTOCOLS:
            return offered.strip()
    return None


def listener_factory(ctx: GatewayContext) -> ListenerFactory:
    metrics = ctx.metrics

    def admit(request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener | None:
        url = urlsplit(request.path.decode("latin-1"))
        path = url.path
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
        forced = parse_qs(url.query).get("provider")
        provider = forced[-1] if forced else None
        if provider is not None and provider not in DIALECTS:
            metrics.upgrades_rejected.labels("unknown_provider").inc()
            return _refuse(400, f"unknown provider {provider[:32]!r}; known: {', '.join(DIALECTS)}", _JSON_HEADERS)
        # The target as received (a Twilio signature covers its bytes: surrogateescape keeps them exact).
        target = request.path.decode("utf-8", "surrogateescape")
        credentials = read_credentials(request.headers.get, target, ctx.settings.websocket.public_url)
        if path_key is not None:
            candidates = ctx.routes.snapshot().candidates(path_key)
            if not candidates_accept(candidates, credentials):
                metrics.auth_failures.labels(*credentials.failure).inc()
                metrics.upgrades_rejected.labels("unauthorized").inc()
                return _refuse(401, "unauthorized", {**_JSON_HEADERS, "WWW-Authenticate": challenge(candidates)})
        stream = ProviderStream(ctx, path_key=path_key, credentials=credentials, provider=provider)
        offered = _subprotocol(request.headers.get("Sec-WebSocket-Protocol"))
        if offered is None:
            return stream
        # The provider offered a subprotocol we speak (jambonz): echo it, or it hangs up.
        response = WSUpgradeResponse.create_101_response({"Sec-WebSocket-Protocol": offered})
        return WSUpgradeResponseWithListener(response, stream)

    return admit

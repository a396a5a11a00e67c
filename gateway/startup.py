"""What a gateway process and the ``--workers`` supervisor share around their start-up: the
endpoints they report, the start that a signal may interrupt, and the banner.

``gateway.server`` and ``gateway.supervisor`` are independent of each other (import-linter), so
this sits below both.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.observability.logging import redact_url
from gateway.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Endpoints:
    ws_url: str
    internal_url: str
    nats_url: str


async def start_unless_signalled(
    start: Coroutine[Any, Any, T], stop: asyncio.Event, shutdown: Callable[[], Awaitable[object]]
) -> T | None:
    """Run ``start`` unless ``stop`` is set first (a signal while, e.g., the first route table is
    awaited): then the start is cancelled, ``shutdown`` runs and the result is None. A start that
    fails runs ``shutdown`` too, and its exception propagates."""
    starting = asyncio.create_task(start)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            logger.info("signal received during start-up: exiting")
            await shutdown()
            return None
        return starting.result()
    except BaseException:
        await shutdown()
        raise
    finally:
        stopping.cancel()


def print_banner(settings: Settings, ep: Endpoints, workers: int | None = None) -> None:
    """What is up and how to try it, for the person who ran ``streamgw serve``."""
    embedded = " (embedded)" if settings.embedded_nats else ""
    routes = {
        "static": "default route: everything to audio.{call_id}.{track}, no auth",
        "file": f"routes file {settings.routing.file}",
        "natskv": f"NATS KV bucket {settings.routing.kv_bucket!r} (operator)",
    }[settings.routing_source]
    lines = [
        "",
        "stream-gateway is up",
        f"  WebSocket : {ep.ws_url}   (and {ep.ws_url}/<control_id>)",
        f"  internal  : {ep.internal_url}/metrics  /healthz  /readyz",
        f"  NATS      : {redact_url(ep.nats_url)}{embedded}",
        f"  routes    : {routes}",
        *([f"  workers   : {workers}"] if workers is not None else []),
        "",
        "Send simulated calls (another terminal):",
        f"  .venv/bin/streamgw simulate --url {ep.ws_url} --calls 3 --track both --duration 10",
        "Watch the audio arrive:",
        f"  .venv/bin/streamgw tap --nats-url {redact_url(ep.nats_url)} --wav ./calls",
        "",
    ]
    print("\n".join(lines), flush=True)

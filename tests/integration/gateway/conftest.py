"""A real gateway in this process, on free loopback ports, against a real nats-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.embedded_nats import EmbeddedNats
from gateway.server import GatewayServer
from gateway.settings import load_settings
from gateway.startup import Endpoints
from tests.helpers import eventually, metric_sum


@dataclass
class Captured:
    """Everything a subscriber on ``>`` saw, split into audio and events."""

    audio: list[Msg] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    event_msgs: list[Msg] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)


@dataclass
class RunningGateway:
    server: GatewayServer
    endpoints: Endpoints
    registry: CollectorRegistry
    nc: Client
    captured: Captured

    @property
    def ws_url(self) -> str:
        return self.endpoints.ws_url

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        return metric_sum(self.registry, name, **labels)

    async def metric_reaches(self, name: str, value: float, timeout: float = 10.0, **labels: str) -> None:
        """Metrics are updated as the server finishes a socket, just after the client sees the close."""
        await eventually(lambda: self.metric(name, **labels) == value, timeout)


async def subscription_live(nc: Client) -> None:
    """A round trip through the server on this connection, queued behind its SUBs.

    nats-py's ``flush()`` may send its PING ahead of SUB commands still in the write buffer, so
    it does not prove the subscription is registered; a message to our own inbox does.
    """
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish(inbox, b"")
    await sub.next_msg(timeout=10)
    await sub.unsubscribe()


GatewayFactory = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def gateway_factory(nats_server: EmbeddedNats) -> AsyncIterator[GatewayFactory]:
    started: list[RunningGateway] = []

    async def make(env: dict[str, str] | None = None, **overrides: Any) -> RunningGateway:
        base: dict[str, Any] = {
            "server.port": 0,
            "server.internal_port": 0,
            "server.host": "127.0.0.1",
            "server.internal_host": "127.0.0.1",
            "nats.url": nats_server.url,
            "routing.source": "static",
            "shutdown.drain_seconds": 2.0,
        }
        base.update({k.replace("__", "."): v for k, v in overrides.items()})
        registry = CollectorRegistry()
        server = GatewayServer(load_settings(env or {}, base), registry=registry)
        endpoints = await server.start()
        nc = await nats.connect(nats_server.url)
        captured = Captured()

        async def on_msg(msg: Msg) -> None:
            if msg.subject.startswith(("$", "_INBOX.")):
                return
            if (msg.headers or {}).get("Sgw-Event"):
                captured.events.append(json.loads(msg.data))
                captured.event_msgs.append(msg)
            else:
                captured.audio.append(msg)
            captured.changed.set()

        await nc.subscribe(">", cb=on_msg)
        await subscription_live(nc)
        gw = RunningGateway(server, endpoints, registry, nc, captured)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        await gw.nc.close()
        await gw.server.drain_and_stop()


@pytest.fixture
async def gateway(gateway_factory: GatewayFactory) -> RunningGateway:
    return await gateway_factory()


def parse_metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out

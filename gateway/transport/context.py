"""The dependencies of the HTTP handlers, built once by the server and frozen afterwards.

Nothing here is module-level state (docs/conventions.md section 9): tests build their own context with a memory
publisher, a static route table and a fresh metrics registry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from gateway.observability.metrics import GatewayMetrics
from gateway.observability.tracing import StreamTracing
from gateway.protocol.session import SessionConfig
from gateway.publish.base import Publisher
from gateway.routing.source import RouteSource
from gateway.settings import Settings
from gateway.transport.overload import Overload
from gateway.transport.registry import StreamRegistry


@dataclass
class Health:
    """What ``/readyz`` reports; flipped by the server and the NATS connection listener."""

    nats_connected: bool = False
    draining: bool = False
    started: bool = False
    confirm_overdue: Callable[[], bool] = lambda: False
    """True while NATS has not confirmed for a while although connected (a hung server)."""

    def reasons(self, routes: RouteSource) -> list[str]:
        out = []
        if not self.started:
            out.append("starting")
        if not self.nats_connected:
            out.append("nats_disconnected")
        elif self.confirm_overdue():
            out.append("nats_unconfirmed")
        if not routes.has_table:
            out.append("no_route_table")
        if self.draining:
            out.append("draining")
        return out


@dataclass
class GatewayContext:
    settings: Settings
    metrics: GatewayMetrics
    publisher: Publisher
    routes: RouteSource
    tracing: StreamTracing
    registry: StreamRegistry = field(default_factory=StreamRegistry)
    health: Health = field(default_factory=Health)
    overload: Overload = field(default_factory=lambda: Overload(0.0))

    @cached_property
    def session_config(self) -> SessionConfig:
        """The per-process constants every session shares (one object, not one per stream)."""
        return SessionConfig(
            max_payload_bytes=self.settings.websocket.max_frame_payload_bytes,
            secret_parameters=tuple(s.lower() for s in self.settings.observability.secret_parameters),
        )

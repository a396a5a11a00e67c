"""Root fixtures: a real nats-server per test on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.embedded_nats import EmbeddedNats

pytest_plugins = ["tests.k8s.fixtures"]


@pytest.fixture
async def nats_server() -> AsyncIterator[EmbeddedNats]:
    """A fresh nats-server with JetStream, on 127.0.0.1 and a port it picked itself."""
    async with EmbeddedNats() as server:
        yield server

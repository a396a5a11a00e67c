"""Fixtures of the reliability suite: in-process gateways, recorders, and the error watch.

The security and soak suites import these fixtures too (``from tests.reliability.conftest
import ...``), so all three share one way of running a gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.reliability.harness import ErrorWatch, Recorder, RunningGateway, start_gateway
from tests.reliability.process import GatewayProcess

GatewayFactory = Callable[..., Awaitable[RunningGateway]]
RecorderFactory = Callable[..., Awaitable[Recorder]]
ProcessFactory = Callable[..., Awaitable[GatewayProcess]]


@pytest.fixture
async def gateway_factory() -> AsyncIterator[GatewayFactory]:
    """``await make(nats_url, **overrides)``; every gateway is drained and stopped at teardown."""
    started: list[RunningGateway] = []

    async def make(nats_url: str, env: dict[str, str] | None = None, **overrides: Any) -> RunningGateway:
        gw = await start_gateway(nats_url, env, **overrides)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        await gw.server.drain_and_stop()


@pytest.fixture
async def recorder_factory() -> AsyncIterator[RecorderFactory]:
    made: list[Recorder] = []

    async def make(url: str, **options: Any) -> Recorder:
        rec = await Recorder.connect(url, **options)
        made.append(rec)
        return rec

    yield make
    for rec in made:
        await rec.close()


@pytest.fixture
async def error_watch() -> AsyncIterator[ErrorWatch]:
    watch = ErrorWatch()
    watch.install()
    try:
        yield watch
    finally:
        watch.uninstall()


@pytest.fixture
async def process_factory() -> AsyncIterator[ProcessFactory]:
    """``await make(env, argv=...)``: a ``streamgw serve`` child, killed at teardown if still alive."""
    started: list[GatewayProcess] = []

    async def make(env: dict[str, str], **kwargs: Any) -> GatewayProcess:
        gp = await GatewayProcess.start(env, **kwargs)
        started.append(gp)
        return gp

    yield make
    for gp in started:
        await gp.kill()

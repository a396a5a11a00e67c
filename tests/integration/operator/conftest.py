"""Fixtures for operator integration tests: ``operator_stack`` (see ``harness``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.embedded_nats import EmbeddedNats
from tests.integration.operator.harness import OperatorStack, operator_stack_fixture
from tests.k8s.fixtures import K8s


@pytest.fixture
async def operator_stack(
    k8s: K8s, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OperatorStack]:
    """The emulated cluster with the StreamRoute CRD and namespace ``voice``, a real nats-server,
    and the operator running against both."""
    async for stack in operator_stack_fixture(k8s, nats_server, monkeypatch):
        yield stack

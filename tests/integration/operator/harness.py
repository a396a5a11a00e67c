"""A running operator stack for tests: emulated Kubernetes + real nats-server + the real operator.

:class:`OperatorStack` runs the unmodified operator (``sgw_operator.handlers.build_registry``,
the same registration ``streamgw-operator`` uses, with the ``kopf run`` arguments of
``sgw_operator.__main__.kopf_cli_args``) under ``kopf.testing.KopfRunner`` against the ``k8s``
fixture's emulator, with settings loaded from ``SGW_OPERATOR_*`` variables and ``KUBECONFIG``
pointing at the emulator (kopf's own kubeconfig login reads it). It can be stopped and started
again (restart tests), reads the route table from the KV bucket with nats-py, and offers bounded
polling helpers. The ``operator_stack`` fixture in this folder's conftest yields one; other test
folders can import :func:`operator_stack_fixture` or build an :class:`OperatorStack` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import kopf
import nats
import pytest
from kopf.testing import KopfRunner
from nats.js.errors import BucketNotFoundError, KeyNotFoundError
from prometheus_client import CollectorRegistry

from gateway.embedded_nats import EmbeddedNats
from sgw_operator.__main__ import kopf_cli_args
from sgw_operator.handlers import build_registry
from sgw_operator.settings import OperatorSettings, load_settings
from sgw_routes.model import RoutingTable, decode_table
from tests.k8s.fixtures import K8s

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "charts" / "stream-gateway" / "crds" / "streamroutes.yaml"
EXAMPLES = ROOT / "deploy" / "examples"
ROUTES_API = "/apis/streamgateway.io/v1alpha1"


async def eventually(
    check: Callable[[], Awaitable[T | None]] | Callable[[], T | None],
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
    message: str = "the condition",
) -> T:
    """Poll ``check`` (sync or async) until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = check()
        last = await result if asyncio.iscoroutine(result) else result
        if last:
            return last  # type: ignore[no-any-return]
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} did not happen within {timeout}s (last: {last!r})")
        await asyncio.sleep(interval)


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return dict(cond)
    return None


class OperatorStack:
    def __init__(self, k8s: K8s, nats_server: EmbeddedNats, namespace: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.k8s = k8s
        self.nats = nats_server
        self.namespace = namespace
        self.monkeypatch = monkeypatch
        self.env = {
            "SGW_OPERATOR_NATS_URL": nats_server.url,
            "SGW_OPERATOR_NAMESPACES": namespace,
            "SGW_OPERATOR_METRICS_PORT": "0",
            "SGW_OPERATOR_LISTEN_HOST": "127.0.0.1",
            "SGW_OPERATOR_DELETE_TIMEOUT": "5",
            "KUBECONFIG": str(k8s.kubeconfig),
        }
        self.settings: OperatorSettings = load_settings(self.env)
        self.metrics = CollectorRegistry()
        self._runner: KopfRunner | None = None
        self.starts = 0

    # ---- operator lifecycle --------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._runner is not None

    def start(self) -> None:
        """Start the operator (a fresh kopf registry, settings and metrics registry each time)."""
        assert self._runner is None, "already running"
        # kopf's kubeconfig login reads the process environment itself.
        self.monkeypatch.setenv("KUBECONFIG", str(self.k8s.kubeconfig))
        self.metrics = CollectorRegistry()
        registry = build_registry(settings=self.settings, metrics_registry=self.metrics)
        runner = KopfRunner(
            [*kopf_cli_args(self.settings), "--verbose"],
            registry=registry,
            settings=kopf.OperatorSettings(),
            timeout=60,
        )
        runner.__enter__()
        self._runner = runner
        self.starts += 1

    def stop(self) -> str:
        """Stop the operator; returns its log output. kopf exceptions are re-raised here."""
        runner, self._runner = self._runner, None
        if runner is None:
            return ""
        runner.__exit__(None, None, None)
        return runner.output

    def restart(self) -> None:
        self.stop()
        self.start()

    def metric(self, name: str, **labels: str) -> float | None:
        return self.metrics.get_sample_value(name, labels or None)

    # ---- Kubernetes ----------------------------------------------------------------------

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """The real kubectl, in this stack's namespace."""
        return self.k8s.run_kubectl("-n", self.namespace, *args, input=input, check=check, timeout=timeout)

    def route(self, name: str) -> dict[str, Any] | None:
        result = self.k8s.http("GET", f"{ROUTES_API}/namespaces/{self.namespace}/streamroutes/{name}")
        return result.body if result.status == 200 and isinstance(result.body, dict) else None

    def events(self, name: str) -> list[dict[str, Any]]:
        result = self.k8s.http("GET", f"/api/v1/namespaces/{self.namespace}/events")
        items = result.body.get("items", []) if isinstance(result.body, dict) else []
        return [e for e in items if (e.get("involvedObject") or {}).get("name") == name]

    async def wait_condition(
        self,
        name: str,
        type_: str = "Ready",
        *,
        status: str | None = None,
        reason: str | None = None,
        timeout: float = 20,
    ) -> dict[str, Any]:
        """Wait until route ``name`` has a condition matching ``status``/``reason``; return the route."""

        def check() -> dict[str, Any] | None:
            obj = self.route(name)
            cond = condition(obj, type_)
            if cond is None or (status is not None and cond["status"] != status):
                return None
            if reason is not None and cond.get("reason") != reason:
                return None
            return obj

        return await eventually(check, timeout=timeout, message=f"{name}: {type_} {status or ''} {reason or ''}")

    # ---- NATS KV ---------------------------------------------------------------------------

    async def table_bytes(self) -> bytes | None:
        """The raw value of the table key (``None``: no bucket or no key)."""
        nc = await nats.connect(self.nats.url, connect_timeout=5, max_reconnect_attempts=0)
        try:
            kv = await nc.jetstream().key_value(self.settings.kv.bucket)
            entry = await kv.get(self.settings.kv.key)
            return entry.value or b""
        except (BucketNotFoundError, KeyNotFoundError):
            return None
        finally:
            await nc.close()

    async def table(self) -> RoutingTable | None:
        """The route table currently in the KV bucket, decoded as gateways decode it."""
        raw = await self.table_bytes()
        return None if raw is None else decode_table(raw)

    async def wait_table(
        self, predicate: Callable[[RoutingTable], bool], *, timeout: float = 20, message: str = "the route table"
    ) -> RoutingTable:
        seen: list[RoutingTable | None] = []

        async def check() -> RoutingTable | None:
            table = await self.table()
            seen[:] = [table]
            return table if table is not None and predicate(table) else None

        try:
            return await eventually(check, timeout=timeout, message=message)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last table: {seen[-1] if seen else None!r}") from None


def route_names(table: RoutingTable) -> list[str]:
    return [route.name for route in table.routes]


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)


@contextlib.contextmanager
def running(stack: OperatorStack) -> Iterator[OperatorStack]:
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


async def operator_stack_fixture(
    k8s: K8s, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch, namespace: str = "voice"
) -> AsyncIterator[OperatorStack]:
    """Body of the ``operator_stack`` fixture: CRD applied, namespace created, operator running."""
    k8s.apply_crd(CRD)
    k8s.create_namespace(namespace)
    stack = OperatorStack(k8s, nats_server, namespace, monkeypatch)
    with running(stack):
        yield stack

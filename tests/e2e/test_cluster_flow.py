"""The whole product as a user meets it, minus a real cluster: the operator under KopfRunner against
the emulated API server, the real kubectl, a real nats-server, a real gateway watching the KV
bucket, simulated SignalWire calls, and (in its own test, so the KV watch is tested without it) a real
Prometheus scraping the gateway and the operator.

`kubectl apply` of a StreamRoute reaches the running gateway without a restart; a token rotation is
enforced; `kubectl delete` takes the route away from new streams while a live stream keeps its own.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from gateway.embedded_nats import EmbeddedNats
from gateway.server import GatewayServer
from gateway.settings import load_settings
from gateway.tools.simulate import SimulateOptions, simulate
from sgw_operator.settings import load_settings as load_operator_settings
from sgw_routes.model import RoutingTable
from tests.integration.operator.harness import CRD, EXAMPLES, OperatorStack, eventually, running
from tests.k8s.fixtures import K8s
from tests.monitoring.promtools import PrometheusServer, free_port, prometheus_binary

NS = "voice"


@pytest.fixture
async def stack(k8s: K8s, nats_server: EmbeddedNats, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OperatorStack]:
    k8s.apply_crd(CRD)
    k8s.create_namespace(NS)
    stack = OperatorStack(k8s, nats_server, NS, monkeypatch)
    stack.env["SGW_OPERATOR_METRICS_PORT"] = str(free_port())  # scraped by Prometheus below
    stack.settings = load_operator_settings(stack.env)
    with running(stack):
        yield stack


async def start_gateway(nats_url: str) -> GatewayServer:
    settings = load_settings(
        {},
        {
            "server.port": 0,
            "server.internal_port": 0,
            "server.host": "127.0.0.1",
            "nats.url": nats_url,
            "routing.source": "natskv",
            "routing.initial_table_timeout": 20.0,
        },
    )
    server = GatewayServer(settings)
    await server.start()
    return server


def gateway_table(server: GatewayServer) -> RoutingTable:
    assert server.ctx is not None
    return server.ctx.routes.snapshot()


async def call(
    server: GatewayServer, control_id: str, token: str | None, duration: float = 0.3
) -> tuple[str, int | None, str | None]:
    assert server.endpoints is not None
    report = await simulate(
        SimulateOptions(
            url=server.endpoints.ws_url, calls=1, duration=duration, realtime=False, control_id=control_id, token=token
        )
    )
    c = report.calls[0]
    return c.call_id, c.close_code, c.error


@pytest.mark.timeout(240)
async def test_kubectl_apply_reaches_a_live_gateway_through_the_kv_bucket(
    stack: OperatorStack, nats_server: EmbeddedNats
) -> None:
    # The operator publishes a (possibly empty) table first; a gateway started afterwards serves
    # with the current table from its first request on.
    await stack.wait_table(lambda t: True)
    gateway = await start_gateway(nats_server.url)
    nc = await nats.connect(nats_server.url)
    audio: list[Msg] = []

    async def on_audio(msg: Msg) -> None:
        audio.append(msg)

    await nc.subscribe("transcribe.>", cb=on_audio)
    try:
        assert gateway_table(gateway).version == (await stack.table()).version  # type: ignore[union-attr]
        # before the route exists: no route for this key, and the gateway has no default route
        _, code, _ = await call(gateway, "transcribe-0", "replace-me-with-a-long-random-token")
        assert code == 1008

        stack.kubectl(
            "apply", "-f", str(EXAMPLES / "transcription-secret.yaml"), "-f", str(EXAMPLES / "transcription.yaml")
        )
        stack.kubectl("wait", "--for=condition=Ready", "sr/transcription", "--timeout=30s")
        await eventually(
            lambda: any(r.label == "transcription" for r in gateway_table(gateway).routes),
            message="gateway sees the route",
        )

        call_id, code, error = await call(gateway, "transcribe-1", "replace-me-with-a-long-random-token")
        assert (code, error) == (1000, None)
        await eventually(
            lambda: any(m.subject == f"transcribe.{call_id}.inbound" for m in audio),
            message="audio on the route's subject",
        )
        _, code, error = await call(gateway, "transcribe-2", "wrong-token")
        assert error is not None and "401" in error

        # rotate the token: the old one is refused from then on, the new one accepted
        old_hash = next(r.token_sha256 for r in gateway_table(gateway).routes if r.label == "transcription")
        new_token = base64.b64encode(b"rotated-token-0123456789").decode()
        stack.kubectl(
            "patch", "secret", "transcription-token", "--type=merge", "-p", f'{{"data": {{"token": "{new_token}"}}}}'
        )
        await eventually(
            lambda: (
                next(r.token_sha256 for r in gateway_table(gateway).routes if r.label == "transcription") != old_hash
            ),
            message="gateway sees the new token hash",
        )
        _, code, error = await call(gateway, "transcribe-3", "replace-me-with-a-long-random-token")
        assert error is not None and "401" in error
        _, code, error = await call(gateway, "transcribe-4", "rotated-token-0123456789")
        assert (code, error) == (1000, None)

        # a long call is live while the route is deleted: it keeps its route to the end
        live = asyncio.create_task(
            simulate(
                SimulateOptions(
                    url=gateway.endpoints.ws_url,  # type: ignore[union-attr]
                    calls=1,
                    duration=4.0,
                    realtime=True,
                    control_id="transcribe-5",
                    token="rotated-token-0123456789",
                )
            )
        )
        await eventually(
            lambda: len(gateway.ctx.registry) > 0,  # type: ignore[union-attr]
            message="live call streaming",
        )
        stack.kubectl("delete", "sr/transcription", "--timeout=30s")
        await eventually(
            lambda: not any(r.label == "transcription" for r in gateway_table(gateway).routes),
            message="route gone from the gateway",
        )
        _, code, _ = await call(gateway, "transcribe-6", "rotated-token-0123456789")
        assert code == 1008
        report = await live
        live_call = report.calls[0]
        assert live_call.close_code == 1000
        await eventually(
            lambda: (
                len([m for m in audio if m.subject == f"transcribe.{live_call.call_id}.inbound"])
                == len(live_call.sent["inbound"])
            ),
            message="every frame of the live call",
        )
        got = [m.data for m in audio if m.subject == f"transcribe.{live_call.call_id}.inbound"]
        assert got == live_call.sent["inbound"]
    finally:
        await nc.close()
        await gateway.drain_and_stop()


@pytest.mark.timeout(240)
async def test_prometheus_scrapes_the_gateway_and_the_operator(
    stack: OperatorStack, nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    await stack.wait_table(lambda t: True)
    gateway = await start_gateway(nats_server.url)
    prom = PrometheusServer(
        prometheus_binary(),
        tmp_path,
        {
            "stream-gateway": [gateway.endpoints.internal_url.removeprefix("http://")],  # type: ignore[union-attr]
            "stream-gateway-operator": [f"127.0.0.1:{stack.settings.metrics_port}"],
        },
        scrape_interval="1s",
    )
    await asyncio.to_thread(prom.start)
    try:
        # Prometheus' target discovery takes a few seconds before the first scrape
        await asyncio.to_thread(prom.wait_for, 'count(up{job=~"stream-gateway.*"} == 1) == 2', bool, 30)
        stack.kubectl(
            "apply", "-f", str(EXAMPLES / "transcription-secret.yaml"), "-f", str(EXAMPLES / "transcription.yaml")
        )
        stack.kubectl("wait", "--for=condition=Ready", "sr/transcription", "--timeout=30s")
        await eventually(
            lambda: any(r.label == "transcription" for r in gateway_table(gateway).routes),
            message="gateway sees the route",
        )
        live = asyncio.create_task(
            simulate(
                SimulateOptions(
                    url=gateway.endpoints.ws_url,  # type: ignore[union-attr]
                    calls=1,
                    duration=6.0,
                    realtime=True,
                    control_id="transcribe-1",
                    token="replace-me-with-a-long-random-token",
                )
            )
        )
        # Prometheus scrapes both components while a call runs
        await asyncio.to_thread(prom.wait_for, 'sum(sgw_streams_active{job="stream-gateway"}) > 0', bool, 20)
        await asyncio.to_thread(prom.wait_for, 'sgw_operator_routes{job="stream-gateway-operator"} >= 1', bool, 20)
        await asyncio.to_thread(prom.wait_for, 'sum(sgw_operator_reconciles_total{reason="accepted"}) > 0', bool, 20)
        versions = await asyncio.to_thread(
            prom.wait_for, "max(sgw_route_table_version) == max(sgw_operator_table_version)", bool, 20
        )
        assert versions
        report = await live
        assert report.calls[0].close_code == 1000
    finally:
        await asyncio.to_thread(prom.stop)
        await gateway.drain_and_stop()

"""What a newcomer meets first, as real processes: `streamgw serve --nats-url URL` with no routes
streams at once on the default route; a gateway told to use the operator's KV bucket before there
is one stays unready, says what to do, answers upgrades with 503, and serves as soon as a table
appears in the bucket (the gateway's KV watch, without Kubernetes or Prometheus)."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.msg import Msg

from gateway.embedded_nats import EmbeddedNats
from gateway.tools.simulate import SimulateOptions, simulate
from sgw_routes.model import Route, RoutingTable, encode_table
from tests.helpers import eventually
from tests.reliability.process import SERVE, GatewayProcess, stop_process

LOOPBACK_ONLY = {
    "SGW_SERVER__HOST": "127.0.0.1",
    "SGW_SERVER__INTERNAL_HOST": "127.0.0.1",
    "SGW_SERVER__PORT": "0",
    "SGW_SERVER__INTERNAL_PORT": "0",
}
"""Not a routing setting: only what keeps the test on loopback and off fixed ports."""


def _readyz(internal_url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"{internal_url}/readyz", timeout=5) as resp:  # noqa: S310 - loopback
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture
async def audio(nats_server: EmbeddedNats) -> AsyncIterator[list[Msg]]:
    nc = await nats.connect(nats_server.url)
    got: list[Msg] = []

    async def on_msg(msg: Msg) -> None:
        got.append(msg)

    await nc.subscribe("audio.>", cb=on_msg)
    await nc.flush()
    try:
        yield got
    finally:
        await nc.close()


async def test_serve_with_only_a_nats_url_delivers_a_call(nats_server: EmbeddedNats, audio: list[Msg]) -> None:
    gw = await GatewayProcess.start(LOOPBACK_ONLY, argv=(*SERVE, "--nats-url", nats_server.url))
    try:
        await eventually(lambda: "routes    : default route" in gw.text(), what="the banner names the default route")
        status, body = await asyncio.to_thread(_readyz, gw.internal_url)
        assert status == 200, body
        report = await simulate(SimulateOptions(url=gw.ws_url, calls=1, duration=0.4, track="both", realtime=False))
        call = report.calls[0]
        assert (call.close_code, call.error) == (1000, None)
        sent = len(call.sent["inbound"]) + len(call.sent["outbound"])
        await eventually(lambda: len(audio) >= sent, what="every frame on audio.{call_id}.{track}")
        assert {m.subject for m in audio} == {f"audio.{call.call_id}.inbound", f"audio.{call.call_id}.outbound"}
        assert [m.data for m in audio if m.subject.endswith(".inbound")] == call.sent["inbound"]
    finally:
        await stop_process(gw)


async def test_kv_source_without_a_bucket_is_unready_then_serves_the_operators_table(
    nats_server: EmbeddedNats, audio: list[Msg]
) -> None:
    env = {**LOOPBACK_ONLY, "SGW_ROUTING__INITIAL_TABLE_TIMEOUT": "0.5"}
    gw = await GatewayProcess.start(env, argv=(*SERVE, "--nats-url", nats_server.url, "--route-source", "natskv"))
    try:
        status, body = await asyncio.to_thread(_readyz, gw.internal_url)
        assert status == 503 and "no_route_table" in body["reasons"]  # type: ignore[operator]
        await eventually(lambda: "does not exist" in gw.text(), what="the hint in the log")
        hint = next(line for line in gw.output if "does not exist" in line)
        assert "Install the operator" in hint and "kubectl apply" in hint and "--routes" in hint
        report = await simulate(SimulateOptions(url=gw.ws_url, calls=1, duration=0.1, realtime=False))
        assert report.calls[0].error is not None and "503" in report.calls[0].error

        # What the operator does: create the bucket and write the compiled table.
        nc = await nats.connect(nats_server.url)
        try:
            kv = await nc.jetstream().create_key_value(bucket="sgw-routes")
            table = RoutingTable(version=7, routes=(Route(name="all", label="all", subject="kv.{call_id}.{track}"),))
            await kv.put("table", encode_table(table))
        finally:
            await nc.close()

        async def ready() -> bool:
            return (await asyncio.to_thread(_readyz, gw.internal_url))[0] == 200

        deadline = asyncio.get_running_loop().time() + 15
        while not await ready():
            assert asyncio.get_running_loop().time() < deadline, "gateway never became ready"
            await asyncio.sleep(0.05)
        sub = await nats.connect(nats_server.url)
        try:
            got: list[Msg] = []

            async def on_msg(msg: Msg) -> None:
                got.append(msg)

            await sub.subscribe("kv.>", cb=on_msg)
            await sub.flush()
            report = await simulate(SimulateOptions(url=gw.ws_url, calls=1, duration=0.2, realtime=False))
            call = report.calls[0]
            assert (call.close_code, call.error) == (1000, None)
            await eventually(lambda: len(got) >= len(call.sent["inbound"]), what="audio on the KV route's subject")
            assert [m.data for m in got] == call.sent["inbound"]
        finally:
            await sub.close()
    finally:
        await stop_process(gw)

"""Overload without silent loss.

- NATS connected but slower than the gateway (a proxy that takes the gateway's bytes only so fast
  plays a saturated server): the gateway pauses reading the provider sockets while more than
  ``nats.pending_bytes`` wait, so the providers slow down and nothing is lost; past
  ``buffer.max_pause`` it reads again and the stream buffers hold, dropping the oldest frames
  past their bound, and every frame lost is a frame counted.
- The process itself saturated (event-loop lag over ``server.max_loop_lag``): new streams get 503
  so the load balancer tries another pod, and the streams already admitted lose nothing.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.msg import Msg

from gateway.embedded_nats import EmbeddedNats
from gateway.tools.simulate import SimulateOptions, simulate
from tests.reliability.capture import create_capture_stream, read_capture, stored_messages
from tests.reliability.conftest import GatewayFactory
from tests.reliability.harness import RunningGateway, eventually, eventually_async
from tests.reliability.process import SERVE, GatewayProcess, serve_env, stop_process
from tests.reliability.proxy import OneWayPartitionProxy
from tests.reliability.rawws import RawWebSocket


@pytest.fixture
async def slow_nats(nats_server: EmbeddedNats) -> AsyncIterator[OneWayPartitionProxy]:
    async with OneWayPartitionProxy("127.0.0.1", nats_server.port, rate=600_000) as proxy:
        yield proxy


async def stream_and_count(gw: RunningGateway, nats_url: str, *, calls: int, seconds: float) -> tuple[int, int, int]:
    """Calls at maximum rate through the gateway; returns (frames sent, stored, counted dropped)."""
    report = await simulate(
        SimulateOptions(
            url=gw.ws_url, calls=calls, track="both", duration=seconds, realtime=False, seed=2, close_timeout=60.0
        )
    )
    for call in report.calls:
        assert (call.close_code, call.error) == (1000, None)
    await eventually(gw.idle, 60, "every stream buffer emptied")
    assert gw.server.ctx is not None
    # Through the slow proxy: everything written must be confirmed (PONG), i.e. taken by NATS.
    assert await gw.server.ctx.publisher.wait_idle(60)
    expected = sum(c.frames_sent for c in report.calls) - gw.metric("sgw_frames_dropped_total")
    await eventually_async(
        lambda: _stored_at_least(nats_url, expected + 2 * calls), 20, "the capture stream stored everything"
    )
    capture = await read_capture(nats_url)
    sent = sum(c.frames_sent for c in report.calls)
    stored = sum(len({f.seq for f in capture.audio[(c.call_id, t)]}) for c in report.calls for t in c.tracks)
    dropped = sum(
        int(capture.stopped(c.call_id)["tracks"][t]["dropped"])  # type: ignore[index]
        for c in report.calls
        for t in c.tracks
    )
    return sent, stored, dropped


async def _stored_at_least(url: str, n: float) -> bool:
    return await stored_messages(url) >= n


@pytest.mark.timeout(180)
async def test_a_slow_nats_pauses_the_providers_and_loses_nothing(
    nats_server: EmbeddedNats, slow_nats: OneWayPartitionProxy, gateway_factory: GatewayFactory
) -> None:
    await create_capture_stream(nats_server.url)
    # A short confirmation timeout: a PING queued behind the backlog waits far longer than 1 s for
    # its PONG, yet the server reads all the time, so the gateway must stay with it (leaving a slow
    # server for a hung one would only send everything unconfirmed twice).
    gw = await gateway_factory(
        slow_nats.url,
        **{"nats.pending_bytes": 64 * 1024, "nats.confirm_timeout": 1.0, "buffer.max_pause": 60.0},
    )
    t0 = time.monotonic()
    sent, stored, dropped = await stream_and_count(gw, nats_server.url, calls=20, seconds=10.0)
    pauses = gw.metric("sgw_backpressure_pauses_total")
    print(
        f"slow NATS ({slow_nats.rate / 1000:.0f} KB/s): {sent} frames in {time.monotonic() - t0:.1f}s, "
        f"{stored} stored, {dropped} counted as dropped, {pauses:.0f} pauses of the provider sockets"
    )
    assert pauses >= 1
    assert stored == sent and dropped == 0
    assert gw.metric("sgw_frames_dropped_total") == 0
    assert (gw.metric("sgw_nats_reconnects_total"), gw.metric("sgw_frames_resent_total")) == (0, 0)
    assert slow_nats.connections == 1


@pytest.mark.timeout(180)
async def test_past_the_pause_bound_only_counted_frames_are_lost(
    nats_server: EmbeddedNats, slow_nats: OneWayPartitionProxy, gateway_factory: GatewayFactory
) -> None:
    await create_capture_stream(nats_server.url)
    gw = await gateway_factory(
        slow_nats.url,
        **{
            "nats.pending_bytes": 64 * 1024,
            "nats.confirm_timeout": 60.0,
            "buffer.max_pause": 0.2,
            "buffer.max_frames": 50,
        },
    )
    sent, stored, dropped = await stream_and_count(gw, nats_server.url, calls=20, seconds=10.0)
    counted = gw.metric("sgw_frames_dropped_total", reason="backpressure")
    print(f"slow NATS, pause bound 0.2 s: {sent} frames, {stored} stored, {dropped} dropped ({counted:.0f} counted)")
    assert dropped > 0, "the bound was never reached: the test did not overload anything"
    assert stored + dropped == sent
    assert counted == dropped


ADMITTED_ROUTE = """
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: admitted}
spec:
  match: {controlId: "admitted-*"}
  target: {subject: "admitted.{call_id}.{track}", eventsSubject: "admitted-events.{call_id}"}
"""


@pytest.mark.timeout(180)
async def test_a_saturated_process_refuses_new_streams_and_keeps_the_admitted_ones(
    nats_server: EmbeddedNats, tmp_path: Path
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ADMITTED_ROUTE)
    env = serve_env(
        nats_server.url,
        server__max_loop_lag="0.02",
        routing__source="file",
        routing__file=str(routes),
        routing__default_route="true",  # the overload's streams: published, not watched here
    )
    gw = await GatewayProcess.start(env, argv=SERVE)
    nc = await nats.connect(nats_server.url)
    got: dict[str, list[Msg]] = defaultdict(list)

    async def on_msg(msg: Msg) -> None:
        got[msg.subject].append(msg)

    await nc.subscribe("admitted.>", cb=on_msg)
    await nc.subscribe("admitted-events.>", cb=on_msg)
    await nc.flush()
    loadgen = None
    try:
        # The admitted calls: real time, checked frame by frame at the end.
        admitted = asyncio.create_task(
            simulate(
                SimulateOptions(
                    url=gw.ws_url, calls=5, track="both", duration=8.0, realtime=True, seed=4, control_id="admitted-{i}"
                )
            )
        )
        # The overload: the benchmark's load generator at maximum rate, in its own process.
        loadgen = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bench.loadgen", "--url", gw.ws_url, "--mode", "max", "--calls", "20"),
            *("--ticks", "20000"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert loadgen.stdin is not None and loadgen.stdout is not None
        await asyncio.wait_for(loadgen.stdout.readline(), 30)  # "ready": its streams are admitted
        loadgen.stdin.write(b'{"cmd":"go"}\n')
        await loadgen.stdin.drain()

        def lag() -> float:
            with urllib.request.urlopen(f"{gw.internal_url}/metrics", timeout=5) as resp:  # noqa: S310 - loopback
                for line in resp.read().decode().splitlines():
                    if line.startswith("sgw_event_loop_lag_seconds "):
                        return float(line.split()[1])
            return 0.0

        deadline = time.monotonic() + 30
        while await asyncio.to_thread(lag) <= 0.02:
            assert time.monotonic() < deadline, "the load never saturated the gateway"
        statuses = []
        for _ in range(10):
            ws = await RawWebSocket.connect(gw.ws_url)
            statuses.append(ws.handshake.status)
            await ws.aclose()
        print(f"saturated gateway: 10 new upgrades answered {statuses}")
        metrics = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"{gw.internal_url}/metrics", timeout=5).read().decode()  # noqa: S310
        )
        report = await admitted
        await asyncio.wait_for(loadgen.stdout.readline(), 120)  # "sent": the overload is over
        loadgen.stdin.write(b'{"cmd":"stop"}\n')
        await loadgen.stdin.drain()
        await asyncio.wait_for(loadgen.stdout.readline(), 60)  # "closed"
        for call in report.calls:
            await eventually(
                lambda c=call: any(
                    json.loads(m.data)["type"] == "stopped" for m in got[f"admitted-events.{c.call_id}"]
                ),
                30,
                "stopped",
            )
    finally:
        if loadgen is not None and loadgen.returncode is None:
            loadgen.kill()
            await loadgen.wait()
        await nc.close()
        await stop_process(gw)
    refused = [s for s in statuses if s == 503]
    assert refused, statuses
    assert 'sgw_ws_upgrades_rejected_total{reason="overloaded"}' in metrics
    for call in report.calls:
        assert (call.close_code, call.error) == (1000, None)
        for track in call.tracks:
            msgs = got[f"admitted.{call.call_id}.{track}"]
            assert [m.data for m in msgs] == call.sent[track], f"{call.call_id}/{track}: an admitted call lost audio"

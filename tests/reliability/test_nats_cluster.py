"""Failover in a NATS cluster: three clustered ``nats-server`` processes on loopback, the gateway
given all three URLs, calls streaming both tracks.

Witnesses: one subscriber per server, each on its own connection that never reconnects. Interest
travels over the routes, so every live server delivers every message to its own witness; a server
that dies takes only its own witness with it. A frame arrived if any witness saw it; duplicates
are counted by the witness on the server that stayed up the whole time.

- The server the gateway is connected to is killed mid-call: the gateway moves to another one;
  every frame arrives, or the loss equals what the gateway counted.
- Two failovers 1.5 s apart: nothing lost, and the gateway does not wait out a confirmation that
  died with the first connection (that resent every frame published in the meantime).
- A frozen server (SIGSTOP) keeps its sockets open and answers nothing: the gateway notices within
  its confirmation timeout, reports not-ready, and moves to a healthy server within seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from gateway.embedded_nats import EmbeddedNats
from gateway.tools.simulate import CallReport, SimulateOptions, simulate
from tests.reliability.cluster import NatsCluster
from tests.reliability.conftest import GatewayFactory
from tests.reliability.harness import RunningGateway, eventually


@dataclass
class Witness:
    """Everything one server delivered: (call, track) -> Sgw-Seq -> copies, with arrival times."""

    server: EmbeddedNats
    nc: Client | None = None
    copies: dict[tuple[str, str], dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    payloads: dict[tuple[str, str, int], bytes] = field(default_factory=dict)
    stopped: dict[str, dict[str, object]] = field(default_factory=dict)
    arrivals: list[float] = field(default_factory=list)

    async def start(self) -> None:
        self.nc = await nats.connect(self.server.url, allow_reconnect=False)
        await self.nc.subscribe("audio.>", cb=self._on_audio)
        await self.nc.subscribe("events.>", cb=self._on_event)
        await self.nc.flush()

    async def _on_audio(self, msg: Msg) -> None:
        _, call_id, track = msg.subject.split(".")
        seq = int((msg.headers or {})["Sgw-Seq"])
        self.copies[(call_id, track)][seq] += 1
        self.payloads[(call_id, track, seq)] = msg.data
        self.arrivals.append(time.monotonic())

    async def _on_event(self, msg: Msg) -> None:
        event = json.loads(msg.data)
        if event["type"] == "stopped":
            self.stopped[event["call_id"]] = event

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()


@pytest.fixture
async def cluster() -> AsyncIterator[NatsCluster]:
    c = NatsCluster(3)
    try:
        await c.start()
        yield c
    finally:
        await c.close()


@pytest.fixture
async def witnesses(cluster: NatsCluster) -> AsyncIterator[list[Witness]]:
    ws = [Witness(server) for server in cluster]
    for w in ws:
        await w.start()
    try:
        yield ws
    finally:
        for w in ws:
            await w.close()


def connected_server(gw: RunningGateway, cluster: NatsCluster) -> EmbeddedNats | None:
    assert gw.server.connection is not None
    url = gw.server.connection.client.connected_url
    return None if url is None or url.port is None else cluster.by_port(url.port)


@dataclass
class Delivery:
    frames: int = 0
    missing: int = 0
    duplicates: int = 0
    dropped_counted: int = 0


def tally(calls: list[CallReport], witnesses: list[Witness], survivor: Witness) -> Delivery:
    out = Delivery()
    for call in calls:
        stopped = survivor.stopped[call.call_id]
        for track in call.tracks:
            sent = call.sent[track]
            out.frames += len(sent)
            seen = set().union(*(w.copies[(call.call_id, track)].keys() for w in witnesses))
            for seq in range(1, len(sent) + 1):
                if seq not in seen:
                    out.missing += 1
                    continue
                payload = next(
                    w.payloads[(call.call_id, track, seq)]
                    for w in witnesses
                    if (call.call_id, track, seq) in w.payloads
                )
                assert payload == sent[seq - 1], f"{call.call_id}/{track} Sgw-Seq {seq}: wrong payload"
            out.duplicates += sum(n - 1 for n in survivor.copies[(call.call_id, track)].values() if n > 1)
            out.dropped_counted += int(stopped["tracks"][track]["dropped"])  # type: ignore[index]
    return out


async def failover(gw: RunningGateway, cluster: NatsCluster, *, freeze: bool = False) -> tuple[EmbeddedNats, float]:
    """Kill (or freeze) the server the gateway is on; return it and the seconds until the gateway
    is connected to another one."""
    victim = connected_server(gw, cluster)
    assert victim is not None, "the gateway is not connected"
    t0 = time.monotonic()
    if freeze:
        victim.freeze()
    else:
        await victim.kill()

    def moved() -> bool:
        now = connected_server(gw, cluster)
        return now is not None and now is not victim

    await eventually(moved, 20, "the gateway connected to another server")
    return victim, time.monotonic() - t0


def largest_gap(arrivals: list[float], after: float) -> float:
    times = sorted(t for t in arrivals if t >= after - 0.5)
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


async def stream_calls(gw: RunningGateway, calls: int, duration: float) -> asyncio.Task[list[CallReport]]:
    async def run() -> list[CallReport]:
        report = await simulate(
            SimulateOptions(url=gw.ws_url, calls=calls, track="both", duration=duration, realtime=True, seed=5)
        )
        return report.calls

    task = asyncio.create_task(run())
    await eventually(lambda: gw.metric("sgw_frames_published_total") >= calls * 100, 15, "calls streaming")
    return task


@pytest.mark.timeout(120)
async def test_killing_the_connected_server_fails_over_without_loss(
    cluster: NatsCluster, witnesses: list[Witness], gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(cluster.urls)
    calls = await stream_calls(gw, calls=4, duration=5.0)
    killed_at = time.monotonic()
    victim, seconds = await failover(gw, cluster)
    reports = await calls
    survivor = next(w for w in witnesses if w.server is not victim)
    await eventually(lambda: all(c.call_id in survivor.stopped for c in reports), 15, "every stopped event")
    await eventually(gw.idle, 15, "buffers emptied")
    d = tally(reports, witnesses, survivor)
    gap = largest_gap(survivor.arrivals, killed_at)
    print(
        f"cluster failover: killed the connected server; connected again after {seconds * 1000:.0f} ms, "
        f"largest gap in delivered audio {gap * 1000:.0f} ms; {d.frames} frames, {d.missing} missing, "
        f"{d.duplicates} duplicates, {d.dropped_counted} counted as dropped, "
        f"{gw.metric('sgw_frames_resent_total'):.0f} resent"
    )
    for call in reports:
        assert (call.close_code, call.error) == (1000, None)
    assert d.missing == d.dropped_counted == 0
    assert d.duplicates <= gw.metric("sgw_frames_resent_total")


@pytest.mark.timeout(120)
async def test_two_failovers_in_a_row_lose_nothing_and_resend_only_the_unconfirmed(
    cluster: NatsCluster, witnesses: list[Witness], gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(cluster.urls)
    calls = await stream_calls(gw, calls=4, duration=6.0)
    first, t1 = await failover(gw, cluster)
    await asyncio.sleep(max(0.0, 1.5 - t1))  # the interval between the two faults is the test input
    second, t2 = await failover(gw, cluster)
    reports = await calls
    survivor = next(w for w in witnesses if w.server not in (first, second))
    await eventually(lambda: all(c.call_id in survivor.stopped for c in reports), 15, "every stopped event")
    await eventually(gw.idle, 15, "buffers emptied")
    d = tally(reports, witnesses, survivor)
    resent = gw.metric("sgw_frames_resent_total")
    print(
        f"two failovers 1.5 s apart: connected again after {t1 * 1000:.0f} ms and {t2 * 1000:.0f} ms; "
        f"{d.frames} frames, {d.missing} missing, {d.duplicates} duplicates, {resent:.0f} resent"
    )
    assert d.missing == d.dropped_counted == 0
    # Only what was unconfirmed or recently confirmed at each fault is sent again (a PONG does not
    # mean the dying server passed the frames on): ``nats.resend_window`` of audio and a round
    # trip, not the seconds published while a confirmation that died with the first connection
    # was waited out (600 frames between the faults).
    rate = 4 * 2 * 50
    per_fault = rate * (gw.settings.nats.resend_window + 0.1)
    assert d.duplicates <= resent <= 2 * per_fault, (d.duplicates, resent, per_fault)


@pytest.mark.timeout(120)
async def test_a_frozen_server_is_left_within_seconds_and_readiness_says_so(
    cluster: NatsCluster, witnesses: list[Witness], gateway_factory: GatewayFactory
) -> None:
    gw = await gateway_factory(cluster.urls, **{"nats.confirm_timeout": 1.0})
    calls = await stream_calls(gw, calls=2, duration=6.0)
    victim = connected_server(gw, cluster)
    assert victim is not None
    readiness: list[tuple[float, int]] = []

    async def watch_readiness() -> None:
        while True:
            readiness.append((time.monotonic(), await gw.readyz()))
            await asyncio.sleep(0.02)  # the sampling period of a probe, not a synchronisation

    watcher = asyncio.create_task(watch_readiness())
    frozen_at = time.monotonic()
    victim.freeze()
    try:
        await eventually(
            lambda: connected_server(gw, cluster) not in (None, victim), 10, "the gateway moved to a healthy server"
        )
        moved_after = time.monotonic() - frozen_at
        await eventually(lambda: readiness[-1][1] == 200 and readiness[-1][0] > frozen_at + moved_after, 10, "ready")
        reports = await calls
    finally:
        watcher.cancel()
        victim.thaw()
    unready = [t - frozen_at for t, status in readiness if status == 503 and t >= frozen_at]
    survivor = next(w for w in witnesses if w.server is not victim and w.server is connected_server(gw, cluster))
    await eventually(lambda: all(c.call_id in survivor.stopped for c in reports), 15, "every stopped event")
    await eventually(gw.idle, 15, "buffers emptied")
    d = tally(reports, [w for w in witnesses if w.server is not victim], survivor)
    print(
        f"frozen server (SIGSTOP): /readyz 503 from {min(unready, default=-1) * 1000:.0f} ms to "
        f"{max(unready, default=-1) * 1000:.0f} ms after the freeze; on a healthy server after "
        f"{moved_after * 1000:.0f} ms; {d.frames} frames, {d.missing} missing, {d.duplicates} duplicates"
    )
    assert unready, "readiness never reported the hung server"
    assert moved_after < 5.0
    assert d.missing == d.dropped_counted == 0

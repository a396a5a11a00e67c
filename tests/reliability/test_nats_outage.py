"""NATS outage mid-call: the broker is stopped and restarted on the same port while calls stream.

The buffer window is ``buffer.max_frames`` audio frames per stream, shared by its tracks: at 50
frames/s per track that is ``max_frames / (50 * tracks)`` seconds (1500 frames: 15 s for a
both-tracks call, 30 s for one track). An outage shorter than the window loses nothing; a longer
one loses the oldest frames, each counted as dropped.

Ground truth is a file-backed JetStream stream on the broker (see ``capture.py`` for why a live
subscriber is not enough), completed by a live subscriber on its own reconnecting connection: the
stream ingests asynchronously, so the last message a stopping broker accepted (and confirmed) can
reach subscribers but miss the store. A frame is missing only if neither witness saw it.

A stopped broker confirms what it received before it goes, so the third test cuts the network
instead (one direction, through a proxy): frames reach the broker but are never confirmed, and the
gateway's resend must produce duplicates with identical ``Sgw-Seq``, never a gap.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import cast

import pytest

from gateway.embedded_nats import EmbeddedNats
from gateway.publish.connection import NatsConnection
from gateway.publish.nats import NatsPublisher
from gateway.publish.outbox import Outbox
from gateway.publish.wire import FrameTemplate
from gateway.tools.simulate import SimulateOptions, SimulationReport, simulate
from tests.reliability.capture import create_capture_stream, read_capture
from tests.reliability.conftest import GatewayFactory, RecorderFactory
from tests.reliability.harness import Capture, Frame, RunningGateway, eventually, eventually_async
from tests.reliability.proxy import OneWayPartitionProxy

FRAMES_PER_SECOND = 50


@dataclass
class TrackDelivery:
    accepted: int
    """Frames the gateway read for this track (the ``stopped`` event's ``frames``)."""
    arrived: int
    duplicates: int
    missing: list[int]
    in_order: bool
    only_live: int = 0
    """Frames the live subscriber received that the stream did not store (see ``analyse``)."""


def analyse(frames: list[Frame], accepted: int, sent: list[bytes], live: list[Frame] | None = None) -> TrackDelivery:
    """Frames as the broker stored them: first copies must be in ``Sgw-Seq`` order, copies identical.

    A frame counts as arrived if the stream stored it or the live subscriber received it: JetStream
    ingests asynchronously, so a message the broker accepted (and confirmed to the gateway) just
    before a shutdown can miss the store while it did reach the subscriber. Both are the broker's
    word that it took the frame; what neither saw is missing.
    """
    first: dict[int, bytes] = {}
    order: list[int] = []
    duplicates = 0
    for frame in frames:
        if frame.seq in first:
            assert frame.payload == first[frame.seq], f"Sgw-Seq {frame.seq} arrived twice with different payloads"
            duplicates += 1
            continue
        first[frame.seq] = frame.payload
        order.append(frame.seq)
        assert frame.payload == sent[frame.seq - 1], f"Sgw-Seq {frame.seq} carries the wrong payload"
    live_seen = {}
    for frame in live or []:
        assert frame.payload == sent[frame.seq - 1], f"Sgw-Seq {frame.seq} carries the wrong payload (live)"
        live_seen[frame.seq] = frame.payload
    missing = [seq for seq in range(1, accepted + 1) if seq not in first and seq not in live_seen]
    only_live = sum(1 for seq in live_seen if seq not in first)
    return TrackDelivery(accepted, len(order) + only_live, duplicates, missing, order == sorted(order), only_live)


def deliveries(
    report: SimulationReport, capture: Capture, live: Capture | None = None
) -> dict[tuple[str, str], TrackDelivery]:
    """Every call's tracks analysed against what its ``stopped`` event says the gateway read."""
    tracks: dict[tuple[str, str], TrackDelivery] = {}
    for call in report.calls:
        stopped = capture.stopped(call.call_id)
        assert stopped is not None, f"{call.call_id}: no stopped event stored"
        for track in call.tracks:
            tracks[(call.call_id, track)] = analyse(
                capture.audio.get((call.call_id, track), []),
                stopped["tracks"][track]["frames"],
                call.sent[track],
                live.audio.get((call.call_id, track), []) if live is not None else None,
            )
    return tracks


async def streaming_calls(gw: RunningGateway, *, duration: float, seed: int) -> asyncio.Task[SimulationReport]:
    """Three both-tracks calls, returned once a second of their audio has been published."""
    sim = asyncio.create_task(
        simulate(SimulateOptions(url=gw.ws_url, calls=3, track="both", duration=duration, realtime=True, seed=seed))
    )
    await eventually(lambda: gw.metric("sgw_frames_published_total") >= 300, 10, "calls streaming")
    return sim


async def finished_calls(
    gw: RunningGateway, sim: asyncio.Task[SimulationReport], broker_url: str
) -> tuple[SimulationReport, Capture]:
    """The calls' report once they ended, and the broker's capture once the gateway held nothing."""
    report = await sim
    await eventually(gw.idle, 30, "every stream buffer emptied")
    return report, await read_capture(broker_url)


def assert_resent_without_loss(
    gw: RunningGateway, report: SimulationReport, tracks: dict[tuple[str, str], TrackDelivery], title: str
) -> float:
    """After a connection lost what it carried: every call ended well, nothing is missing, first
    copies are in order, and every duplicate is one the gateway counted as sent again."""
    duplicates = sum(t.duplicates for t in tracks.values())
    resent = gw.metric("sgw_frames_resent_total")
    figures = (
        f"{title}; {sum(t.accepted for t in tracks.values())} frames accepted, "
        f"{sum(t.arrived for t in tracks.values())} arrived, {sum(len(t.missing) for t in tracks.values())} missing, "
        f"{duplicates} duplicates (identical Sgw-Seq and payload), resent {resent:.0f}"
    )
    print(figures)
    for call in report.calls:
        assert call.error is None and call.close_code == 1000, (call.call_id, call.close_code, call.error)
    for key, delivery in tracks.items():
        assert delivery.missing == [], f"{key}: {delivery.missing[:10]}: {figures}"
        assert delivery.in_order, f"{key}: {figures}"
    assert duplicates <= resent, figures
    return resent


@dataclass
class OutageRun:
    report: SimulationReport
    capture: Capture
    live: Capture
    outage: float
    unready_after: float
    ready_after: float
    received_during: float
    tracks: dict[tuple[str, str], TrackDelivery] = field(default_factory=dict)


async def run_outage(
    gw: RunningGateway, broker: EmbeddedNats, live: Capture, *, calls: int, duration: float, outage: float
) -> OutageRun:
    sim = asyncio.create_task(
        simulate(SimulateOptions(url=gw.ws_url, calls=calls, track="both", duration=duration, realtime=True, seed=11))
    )
    # The outage must hit calls that are already streaming: wait for a second of audio per call.
    await eventually(lambda: gw.metric("sgw_frames_published_total") >= calls * 100, 10, "calls streaming")
    received_before = gw.metric("sgw_frames_received_total")
    t0 = time.monotonic()
    await broker.stop()
    await eventually_async(lambda: _ready_is(gw, 503), 5, "/readyz 503 after the broker stopped")
    unready_after = time.monotonic() - t0
    await asyncio.sleep(max(0.0, outage - unready_after))  # the outage length is the test's input
    assert await gw.readyz() == 503, "/readyz must stay 503 for the whole outage"
    assert not sim.done(), "calls must outlive the outage"
    received_during = gw.metric("sgw_frames_received_total") - received_before
    elapsed = time.monotonic() - t0
    await broker.start()
    t1 = time.monotonic()
    await eventually_async(lambda: _ready_is(gw, 200), 15, "/readyz 200 after the broker came back")
    ready_after = time.monotonic() - t1
    report, capture = await finished_calls(gw, sim, broker.url)
    run = OutageRun(report, capture, live, elapsed, unready_after, ready_after, received_during)
    run.tracks = deliveries(report, capture, live)
    return run


async def _ready_is(gw: RunningGateway, status: int) -> bool:
    try:
        return await gw.readyz() == status
    except OSError:
        return False


def _print_run(title: str, gw: RunningGateway, run: OutageRun, window: float) -> str:
    totals = {
        "accepted": sum(t.accepted for t in run.tracks.values()),
        "arrived": sum(t.arrived for t in run.tracks.values()),
        "duplicates": sum(t.duplicates for t in run.tracks.values()),
        "missing": sum(len(t.missing) for t in run.tracks.values()),
        "seen only by the live subscriber": sum(t.only_live for t in run.tracks.values()),
    }
    live_frames = sum(len(v) for v in run.live.audio.values())
    text = (
        f"{title}: outage {run.outage:.2f}s (buffer window {window:.1f}s), /readyz 503 after "
        f"{run.unready_after * 1000:.0f} ms, 200 again {run.ready_after * 1000:.0f} ms after restart; "
        f"frames read during the outage {run.received_during:.0f}; {totals}; "
        f"resent {gw.metric('sgw_frames_resent_total'):.0f}, "
        f"dropped(backpressure) {gw.metric('sgw_frames_dropped_total', reason='backpressure'):.0f}, "
        f"NATS reconnects {gw.metric('sgw_nats_reconnects_total'):.0f}; "
        f"live subscriber saw {live_frames} audio messages (it misses what is sent while it reconnects)"
    )
    print(text)
    return text


@pytest.mark.timeout(120)
async def test_outage_shorter_than_the_buffer_loses_nothing(
    gateway_factory: GatewayFactory, recorder_factory: RecorderFactory, nats_server: EmbeddedNats
) -> None:
    await create_capture_stream(nats_server.url)
    gw = await gateway_factory(nats_server.url)
    live = await recorder_factory(nats_server.url)
    max_frames = gw.settings.buffer.max_frames
    window = max_frames / (FRAMES_PER_SECOND * 2)
    outage = 3.0
    assert outage < window

    run = await run_outage(gw, nats_server, live, calls=4, duration=9.0, outage=outage)
    figures = _print_run("short outage", gw, run, window)

    expected_reads = outage * FRAMES_PER_SECOND * 2 * 4
    assert run.received_during >= 0.7 * expected_reads, f"the gateway stopped reading sockets: {figures}"
    for call in run.report.calls:
        assert call.error is None and call.close_code == 1000, (call.call_id, call.close_code, call.error)
        events = run.capture.events[call.call_id]
        assert events[0]["type"] == "started" and events[-1]["type"] == "stopped", [e["type"] for e in events]
        for track in call.tracks:
            delivery = run.tracks[(call.call_id, track)]
            assert delivery.accepted == len(call.sent[track]), figures
            assert delivery.missing == [], f"{call.call_id}/{track} lost {delivery.missing[:10]}...: {figures}"
            assert delivery.in_order, f"{call.call_id}/{track} out of order: {figures}"
            assert events[-1]["tracks"][track]["dropped"] == 0, figures
    assert gw.metric("sgw_frames_dropped_total") == 0, figures


@pytest.mark.timeout(120)
async def test_outage_longer_than_the_buffer_loses_only_what_is_counted(
    gateway_factory: GatewayFactory, recorder_factory: RecorderFactory, nats_server: EmbeddedNats
) -> None:
    await create_capture_stream(nats_server.url)
    max_frames = 100
    gw = await gateway_factory(nats_server.url, **{"buffer.max_frames": max_frames})
    live = await recorder_factory(nats_server.url)
    window = max_frames / (FRAMES_PER_SECOND * 2)
    outage = 3.0

    run = await run_outage(gw, nats_server, live, calls=3, duration=8.0, outage=outage)
    figures = _print_run("long outage", gw, run, window)

    lost_total = counted_total = 0
    for call in run.report.calls:
        assert call.error is None and call.close_code == 1000, (call.call_id, call.close_code, call.error)
        stopped = run.capture.stopped(call.call_id)
        assert stopped is not None
        for track in call.tracks:
            delivery = run.tracks[(call.call_id, track)]
            counted = stopped["tracks"][track]["dropped"]
            # Nothing lost silently: every missing frame is counted in its stream's ``stopped``.
            assert len(delivery.missing) <= counted, (
                f"{call.call_id}/{track}: {len(delivery.missing)} frames missing, only {counted} counted: {figures}"
            )
            assert delivery.in_order, figures
            # Drop-oldest under one outage evicts one contiguous run of a track's frames.
            if delivery.missing:
                run_span = delivery.missing[-1] - delivery.missing[0] + 1
                assert run_span == len(delivery.missing), f"{call.call_id}/{track}: {delivery.missing}"
            lost_total += len(delivery.missing)
            counted_total += counted
    metric = gw.metric("sgw_frames_dropped_total", reason="backpressure")
    resent = gw.metric("sgw_frames_resent_total")
    print(
        f"long outage: lost {lost_total}, counted {counted_total} ({counted_total - lost_total} counted frames had "
        f"reached the broker unconfirmed; {resent:.0f} frames were given back unconfirmed)"
    )
    assert lost_total > 0, f"the outage was meant to overflow the buffer: {figures}"
    assert counted_total == metric, f"stopped events count {counted_total}, the metric {metric}: {figures}"
    # The only frames counted as dropped that may still have arrived are those the broker took
    # but never confirmed before it went away: given back, re-queued first, evicted first.
    assert 0 <= counted_total - lost_total <= resent, f"lost {lost_total}, counted {counted_total}: {figures}"
    assert gw.metric("sgw_frames_dropped_total") == metric, figures


@pytest.mark.timeout(120)
async def test_one_way_partition_resends_unconfirmed_frames_without_loss(
    gateway_factory: GatewayFactory, nats_server: EmbeddedNats
) -> None:
    """Frames sent while PONGs are lost reach the broker but are never confirmed: the gateway sends
    them again after reconnecting. Nothing may be missing; copies must be identical, same Sgw-Seq."""
    await create_capture_stream(nats_server.url)
    async with OneWayPartitionProxy("127.0.0.1", nats_server.port) as proxy:
        # A short ping interval so the stale connection is noticed in about a second.
        gw = await gateway_factory(proxy.url, **{"nats.ping_interval": 0.4})
        sim = await streaming_calls(gw, duration=6.0, seed=5)
        t0 = time.monotonic()
        proxy.partition()
        await eventually(lambda: gw.metric("sgw_nats_reconnects_total") >= 1, 15, "stale connection replaced")
        detected = time.monotonic() - t0
        report, capture = await finished_calls(gw, sim, nats_server.url)

    resent = assert_resent_without_loss(
        gw,
        report,
        deliveries(report, capture),
        f"one-way partition: noticed and reconnected after {detected:.2f}s, proxy connections {proxy.connections}",
    )
    assert resent > 0


@pytest.mark.timeout(120)
async def test_frames_a_dying_server_confirmed_but_never_delivered_are_sent_again(
    gateway_factory: GatewayFactory, recorder_factory: RecorderFactory, nats_server: EmbeddedNats
) -> None:
    """A PONG means the server read the frames, not that it passed them on; a server killed in
    between loses them (a cluster failover in CI lost one batch so). The proxy plays that server:
    it confirms and delivers nothing, then the connection dies. Everything confirmed within
    ``nats.resend_window`` is sent again, so nothing is missing."""
    await create_capture_stream(nats_server.url)
    live = await recorder_factory(nats_server.url)
    async with OneWayPartitionProxy("127.0.0.1", nats_server.port) as proxy:
        # A window wide enough for a busy machine: what it covers is the test's subject, not its size.
        gw = await gateway_factory(proxy.url, **{"nats.resend_window": 5.0})
        sim = await streaming_calls(gw, duration=5.0, seed=7)
        proxy.swallow()
        published = gw.metric("sgw_frames_published_total")
        # Confirmed and undelivered: frames handed over after the swallow began, and PONGs for them.
        await eventually(
            lambda: proxy.forged_pongs >= 3 and gw.metric("sgw_frames_published_total") >= published + 30,
            10,
            "frames confirmed by the swallowing server",
        )
        proxy.sever()
        await eventually(lambda: gw.metric("sgw_nats_reconnects_total") >= 1, 15, "reconnected")
        report, capture = await finished_calls(gw, sim, nats_server.url)

    resent = assert_resent_without_loss(
        gw,
        report,
        deliveries(report, capture, live),
        f"confirmed, then died: {proxy.forged_pongs} PONGs for undelivered frames",
    )
    assert resent >= 30  # at least the frames confirmed by the swallowing server


class _ReconnectingClient:
    """nats-py's state for a moment after the server went away: not connected, no callback yet."""

    is_connected = False
    max_payload = 1024 * 1024
    _pongs: list[object] = []

    def jetstream(self) -> None:
        return None


class _Connection:
    def __init__(self) -> None:
        self.client = _ReconnectingClient()
        self.ready = asyncio.Event()
        self.ready.set()  # our "disconnected" callback, which clears it, has not run yet

    def add_listener(self, listener: object) -> None:
        pass

    def discard_unsent_publishes(self) -> int:
        return 0


@pytest.mark.timeout(30)
async def test_frames_are_kept_never_spun_on_while_nats_py_is_reconnecting() -> None:
    """Regression: in the window where nats-py is already reconnecting but our "disconnected"
    callback has not run yet, writes cannot reach a socket. A retry loop once froze the whole event
    loop at 100 % CPU there (seen in the long outage test). Now the batch write simply waits: the
    loop keeps running, the frame stays unconfirmed, and the callback gives it back to its outbox."""
    publisher = NatsPublisher(cast(NatsConnection, _Connection()))
    publisher.ready = True  # what the link believed a moment ago
    outbox = Outbox(publisher, [FrameTemplate("audio.x.inbound", {})], capacity=10, max_events=10)
    outbox.frame(0, 1, 0, b"\x00")
    ticks = 0
    for _ in range(20):
        await asyncio.sleep(0.01)  # each tick needs the loop: a spinning retry would starve it
        ticks += 1
    assert ticks == 20 and publisher.inflight == 1 and not outbox.holding
    publisher._on_state("disconnected")  # the callback arrives: the frame goes back to its outbox
    assert publisher.inflight == 0 and outbox.holding and outbox.audio_held == 1

"""The per-stream buffer between the socket reader and NATS, against the in-memory publisher."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client import CollectorRegistry

from gateway.errors import CloseCode
from gateway.observability.metrics import GatewayMetrics
from gateway.protocol.actions import AudioOut, EventOut
from gateway.publish.memory import MemoryPublisher
from gateway.transport.pump import BufferOverflow, StreamPump


def audio(track: str, n: int) -> AudioOut:
    return AudioOut(track, f"audio.c.{track}", bytes([n % 256]), {"Sgw-Seq": str(n)}, 0.0)


def event(kind: str, **body: object) -> EventOut:
    return EventOut(kind, "events.c", {"type": kind, **body}, {"Sgw-Event": kind})


def make(
    capacity: int, overflow: str = "drop_oldest", confirm: bool = True
) -> tuple[StreamPump, MemoryPublisher, GatewayMetrics]:
    publisher = MemoryPublisher(confirm=confirm)
    metrics = GatewayMetrics(CollectorRegistry())
    pump = StreamPump(publisher, metrics, capacity=capacity, overflow=overflow)
    pump.bind("r", None)
    return pump, publisher, metrics


async def test_fifo_order_events_first_and_last() -> None:
    pump, pub, _ = make(10)
    pump.start()
    pump.put_event(event("started"))
    for n in range(1, 4):
        pump.put_audio(audio("inbound", n))
    pump.put_event(event("stopped", tracks={"inbound": {"frames": 3}}))
    assert await pump.close(5) == 0
    assert [m.subject for m in pub.messages] == [
        "events.c",
        "audio.c.inbound",
        "audio.c.inbound",
        "audio.c.inbound",
        "events.c",
    ]
    assert json.loads(pub.messages[-1].payload)["tracks"]["inbound"] == {"frames": 3}  # nothing dropped: no count added


async def test_outage_longer_than_the_buffer_drops_oldest_audio_counted_never_events() -> None:
    pump, pub, metrics = make(3)
    pub.set_ready(False)  # NATS down
    pump.start()
    pump.put_event(event("started"))
    for n in range(1, 7):
        pump.put_audio(audio("inbound" if n % 2 else "outbound", n))
    pump.put_event(event("stopped", tracks={"inbound": {"frames": 3}, "outbound": {"frames": 3}}))
    assert pump.audio_queued == 3
    pub.set_ready(True)  # reconnect
    assert await pump.close(5) == 0
    seqs = [m.headers["Sgw-Seq"] for m in pub.messages if m.subject.startswith("audio")]
    assert seqs == ["4", "5", "6"]  # the newest survive
    stopped = json.loads(pub.messages[-1].payload)
    assert stopped["type"] == "stopped"
    assert stopped["tracks"]["inbound"]["dropped"] == 2 and stopped["tracks"]["outbound"]["dropped"] == 1
    assert metrics.registry.get_sample_value("sgw_frames_dropped_total", {"route": "r", "reason": "backpressure"}) == 3


async def test_overflow_policy_close_raises_1013() -> None:
    pump, pub, _ = make(2, overflow="close")
    pub.set_ready(False)
    pump.put_audio(audio("inbound", 1))
    pump.put_audio(audio("inbound", 2))
    with pytest.raises(BufferOverflow) as info:
        pump.put_audio(audio("inbound", 3))
    assert info.value.close_code == CloseCode.TRY_AGAIN_LATER


async def test_unconfirmed_messages_are_sent_again_in_order_ahead_of_newer_ones() -> None:
    pump, pub, metrics = make(10, confirm=False)
    pump.start()
    for n in range(1, 4):
        pump.put_audio(audio("inbound", n))
    await asyncio.wait_for(_until(lambda: len(pub.messages) == 3), 5)
    assert pub.lose_unconfirmed() == 3  # the connection broke before the broker confirmed them
    pump.put_audio(audio("inbound", 4))
    await asyncio.wait_for(_until(lambda: len(pub.messages) == 4), 5)
    pub.confirm_all()
    assert await pump.close(5) == 0
    assert [m.headers["Sgw-Seq"] for m in pub.messages] == ["1", "2", "3", "4"]
    assert metrics.registry.get_sample_value("sgw_frames_resent_total") == 3


async def test_rejected_frames_are_counted_and_skipped() -> None:
    pump, pub, metrics = make(10)
    pub.max_payload = 500  # this frame is refused for good; the small event is not
    pump.start()
    pump.put_audio(AudioOut("inbound", "audio.c.inbound", bytes(1000), {"Sgw-Seq": "1"}, 0.0))
    pump.put_event(event("stopped", tracks={}))
    await pump.close(5)
    assert metrics.registry.get_sample_value("sgw_frames_dropped_total", {"route": "r", "reason": "rejected"}) == 1
    assert [m.subject for m in pub.messages] == ["events.c"]
    assert json.loads(pub.messages[0].payload)["tracks"]["inbound"]["dropped"] == 1


async def test_close_deadline_abandons_and_counts_what_cannot_be_sent() -> None:
    pump, pub, metrics = make(10)
    pub.set_ready(False)  # NATS never comes back
    pump.start()
    for n in range(1, 4):
        pump.put_audio(audio("inbound", n))
    assert await pump.close(0.05) == 3
    assert metrics.registry.get_sample_value("sgw_frames_dropped_total", {"route": "r", "reason": "shutdown"}) == 3


async def _until(predicate: object) -> None:
    assert callable(predicate)
    while not predicate():  # noqa: ASYNC110 - the memory publisher exposes no event to wait on
        await asyncio.sleep(0)

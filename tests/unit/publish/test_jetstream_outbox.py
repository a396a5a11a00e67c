"""A JetStream route's outbox against the in-memory link and its in-memory stream: ids, window,
timeouts and resends, refusals, outages, bounds. The same outbox against a real JetStream is in
``tests/reliability/test_jetstream_route.py``."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from gateway.observability.metrics import GatewayMetrics
from gateway.publish.acks import REFUSAL_REASONS
from gateway.publish.jetstream import JetStreamOutbox
from gateway.publish.memory import NO_RESPONDERS, MemoryPublisher
from gateway.publish.outbox import BufferOverflow, EventFlood
from tests.helpers import eventually

HEADERS = {"Sgw-Codec": "PCMU/8000", "Sgw-Stream-Id": "s-1"}
STREAM_FULL = (None, b'{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}')


def make(
    *, window: int = 8, capacity: int = 20, drop_oldest: bool = True, ack_timeout: float = 2.0
) -> tuple[JetStreamOutbox, MemoryPublisher, list[str]]:
    link = MemoryPublisher()
    link.ack_timeout = ack_timeout
    refused_events: list[str] = []
    outbox = JetStreamOutbox(
        link,
        ("audio.c.inbound", "audio.c.outbound"),
        HEADERS,
        stream="CALLS",
        stream_id="s-1",
        capacity=capacity,
        max_events=3,
        window=window,
        drop_oldest=drop_oldest,
        on_event_dropped=refused_events.append,
    )
    return outbox, link, refused_events


def ids(link: MemoryPublisher) -> list[str]:
    return [m.headers["Nats-Msg-Id"] for m in link.messages]


async def settled(outbox: JetStreamOutbox) -> None:
    await eventually(lambda: not outbox.holding, 5, what="every message acknowledged")


async def test_a_frame_carries_its_id_and_counts_as_held_until_the_stream_acknowledges_it() -> None:
    outbox, link, _ = make()
    outbox.frame(1, 42, 820, b"\xff" * 160)
    (msg,) = link.messages
    assert msg.subject == "audio.c.outbound" and msg.payload == b"\xff" * 160 and msg.jetstream == "CALLS"
    assert msg.headers == {
        **HEADERS,
        "Nats-Expected-Stream": "CALLS",
        "Sgw-Seq": "42",
        "Sgw-Ts": "820",
        "Nats-Msg-Id": "s-1:outbound:42",
    }
    assert outbox.held_per_track == [0, 1] and outbox.holding
    await settled(outbox)
    assert outbox.held_per_track == [0, 0] and outbox.audio_held == 0 and outbox.dropped == {}


async def test_events_get_stable_ids_of_their_own() -> None:
    outbox, link, _ = make()
    outbox.event("events.c", b'{"type":"started"}', {"Sgw-Event": "started"})
    outbox.frame(0, 1, 0, b"a")
    outbox.event("events.c", b'{"type":"stopped"}', {"Sgw-Event": "stopped"}, final=True)
    assert ids(link) == ["s-1:event:1", "s-1:inbound:1", "s-1:event:2"]
    assert link.messages[0].subject == "events.c" and link.messages[0].payload == b'{"type":"started"}'
    await settled(outbox)


async def test_no_more_than_the_window_awaits_acknowledgement_and_order_is_kept() -> None:
    outbox, link, _ = make(window=4)
    link.js_answer = False
    for seq in range(1, 11):
        outbox.frame(0, seq, 20 * seq, b"x")
    assert ids(link) == [f"s-1:inbound:{n}" for n in range(1, 5)] and outbox.in_flight == 4
    assert link.answer_jetstream() == 4  # four acknowledgements make room for four more
    assert ids(link)[4:] == [f"s-1:inbound:{n}" for n in range(5, 9)]
    link.answer_jetstream()
    link.answer_jetstream()
    assert ids(link) == [f"s-1:inbound:{n}" for n in range(1, 11)] and not outbox.holding


async def test_an_unacknowledged_publish_is_sent_again_with_the_same_id_and_stored_once() -> None:
    outbox, link, _ = make(ack_timeout=0.1)
    router = link.jetstream_acks()
    link.js_answer = False
    outbox.frame(0, 1, 0, b"a")
    outbox.frame(1, 1, 0, b"b")
    kept = len(link.js_answers)
    await eventually(lambda: len(link.js_answers) > kept, 5, what="a resend after the timeout")
    link.js_answer = True
    link.answer_jetstream()  # the first answers (stored), then the copies' (duplicate)
    await settled(outbox)
    assert sorted(ids(link)) == ["s-1:inbound:1", "s-1:outbound:1"]  # stored once each
    assert router.resent >= 2 and outbox.dropped == {}


async def test_no_responders_is_retried_then_counted_and_the_next_refusals_count_at_once() -> None:
    outbox, link, refused_events = make(ack_timeout=0.05)
    link.js_refusal = NO_RESPONDERS
    outbox.frame(0, 1, 0, b"a")
    outbox.event("events.c", b"{}", {"Sgw-Event": "dtmf"})
    await settled(outbox)
    assert outbox.dropped == {"no_stream": [1, 0]} and refused_events == ["no_stream"]
    outbox.frame(0, 2, 20, b"b")
    await eventually(lambda: not outbox.holding, 0.5, what="refused at once, without waiting for a timeout")
    assert outbox.dropped == {"no_stream": [2, 0]}
    assert outbox.held_per_track == [0, 0] and outbox.events_held == 0


async def test_a_full_stream_refuses_for_good_at_once() -> None:
    outbox, link, refused_events = make()
    link.js_refusal = STREAM_FULL
    outbox.frame(1, 1, 0, b"a")
    outbox.event("events.c", b"{}", {"Sgw-Event": "mark"})
    await settled(outbox)
    assert outbox.dropped == {"stream_full": [0, 1]} and refused_events == ["stream_full"]


async def test_a_stored_message_lifts_the_refusing_state() -> None:
    outbox, link, _ = make(ack_timeout=0.05)
    link.js_refusal = NO_RESPONDERS
    outbox.frame(0, 1, 0, b"a")
    await settled(outbox)
    link.js_refusal = None  # the operator created the stream
    outbox.frame(0, 2, 20, b"b")
    await settled(outbox)
    link.js_refusal = NO_RESPONDERS  # a leader election: retried again, not counted at once
    outbox.frame(0, 3, 40, b"c")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert outbox.holding
    link.js_refusal = None
    await settled(outbox)
    assert outbox.dropped == {"no_stream": [1, 0]} and ids(link) == ["s-1:inbound:2", "s-1:inbound:3"]


async def test_an_outage_holds_in_order_and_what_was_in_flight_goes_first_after_it() -> None:
    outbox, link, _ = make(window=2)
    router = link.jetstream_acks()
    link.js_answer = False
    outbox.frame(0, 1, 0, b"a")
    outbox.frame(0, 2, 20, b"b")
    link.set_ready(False)
    router.disconnected()  # the connection broke before the stream answered
    outbox.frame(0, 3, 40, b"c")
    assert outbox.held_per_track == [3, 0] and router.waiting == 0
    link.js_answer = True
    link.set_ready(True)
    await settled(outbox)
    assert ids(link) == ["s-1:inbound:1", "s-1:inbound:2", "s-1:inbound:3"]  # the copies are duplicates
    assert router.resent == 2 and outbox.dropped == {}


async def test_past_capacity_the_oldest_queued_frame_is_dropped_and_counted() -> None:
    outbox, link, _ = make(window=2, capacity=4)
    link.js_answer = False
    for seq in range(1, 7):
        outbox.frame(0, seq, 20 * seq, b"x")
    assert outbox.audio_held == 4 and outbox.dropped == {"backpressure": [2, 0]}
    link.js_answer = True
    link.answer_jetstream()
    await settled(outbox)
    assert ids(link) == ["s-1:inbound:1", "s-1:inbound:2", "s-1:inbound:5", "s-1:inbound:6"]


async def test_overflow_close_policy_and_event_flood_raise() -> None:
    outbox, link, _ = make(window=1, capacity=2, drop_oldest=False)
    link.js_answer = False
    outbox.frame(0, 1, 0, b"x")
    outbox.frame(0, 2, 20, b"x")
    with pytest.raises(BufferOverflow):
        outbox.frame(0, 3, 40, b"x")
    for _ in range(3):
        outbox.event("events.c", b"{}", {"Sgw-Event": "dtmf"})
    with pytest.raises(EventFlood):
        outbox.event("events.c", b"{}", {"Sgw-Event": "dtmf"})
    outbox.event("events.c", b"{}", {"Sgw-Event": "stopped"}, final=True)  # always taken


async def test_abandon_counts_queued_and_unacknowledged_frames() -> None:
    outbox, link, _ = make(window=2)
    router = link.jetstream_acks()
    link.js_answer = False
    for seq in range(1, 5):
        outbox.frame(seq % 2, seq, 0, b"x")
    assert outbox.abandon("shutdown") == 4
    assert outbox.dropped == {"shutdown": [2, 2]} and not outbox.holding and router.waiting == 0
    link.answer_jetstream()  # late answers to abandoned messages change nothing
    assert outbox.dropped == {"shutdown": [2, 2]} and outbox.audio_held == 0


def test_every_refusal_reason_is_an_events_dropped_series_from_the_start() -> None:
    registry = CollectorRegistry()
    GatewayMetrics(registry)
    for reason in REFUSAL_REASONS:
        assert registry.get_sample_value("sgw_events_dropped_total", {"reason": reason}) == 0, reason

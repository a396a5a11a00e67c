"""A stream's outbox against the in-memory link: straight through, held in order, bounded, resent."""

from __future__ import annotations

import pytest

from gateway.errors import CloseCode
from gateway.publish.memory import MemoryPublisher
from gateway.publish.outbox import BufferOverflow, EventFlood, Outbox
from gateway.publish.wire import FrameTemplate, encode, parse

HEADERS = {"Sgw-Codec": "PCMU/8000", "Sgw-Stream-Id": "s-1", "traceparent": "00-tp-01"}


def make(capacity: int = 10, *, drop_oldest: bool = True, confirm: bool = True) -> tuple[Outbox, MemoryPublisher]:
    link = MemoryPublisher(confirm=confirm)
    templates = [FrameTemplate("audio.c.inbound", HEADERS), FrameTemplate("audio.c.outbound", HEADERS)]
    return Outbox(link, templates, capacity=capacity, max_events=3, drop_oldest=drop_oldest), link


def event(outbox: Outbox, kind: str, *, final: bool = False) -> None:
    outbox.event("events.c", f'{{"type":"{kind}"}}'.encode(), {"Sgw-Event": kind}, final=final)


def kinds(link: MemoryPublisher) -> list[str]:
    return [
        m.headers.get("Sgw-Event") or f"{m.subject.rsplit('.', 1)[1]}:{m.headers['Sgw-Seq']}" for m in link.messages
    ]


def test_a_frame_is_the_exact_nats_message_with_every_header() -> None:
    outbox, link = make()
    outbox.frame(1, 42, 820, b"\xff" * 160)
    (msg,) = link.messages
    assert msg.subject == "audio.c.outbound" and msg.payload == b"\xff" * 160
    assert msg.headers == {**HEADERS, "Sgw-Seq": "42", "Sgw-Ts": "820"}
    assert outbox.held_per_track == [0, 0] and not outbox.holding


def test_while_the_link_is_down_everything_is_held_in_order_and_sent_on_reconnect() -> None:
    outbox, link = make()
    event(outbox, "started")
    link.set_ready(False)
    outbox.frame(0, 1, 0, b"a")
    event(outbox, "dtmf")
    outbox.frame(1, 1, 0, b"b")
    assert link.messages[1:] == [] and outbox.holding and outbox.held_per_track == [1, 1]
    link.set_ready(True)  # the link drains what its outboxes hold
    assert kinds(link) == ["started", "inbound:1", "dtmf", "outbound:1"]
    assert not outbox.holding and outbox.held_per_track == [0, 0]


def test_new_frames_wait_behind_held_ones_even_when_the_link_is_back() -> None:
    outbox, link = make()
    link.set_ready(False)
    outbox.frame(0, 1, 0, b"a")
    link.ready = True  # ready again, but the held frame has not been drained yet
    outbox.frame(0, 2, 20, b"b")
    assert link.messages == []
    outbox.drain(10)
    assert kinds(link) == ["inbound:1", "inbound:2"]


def test_past_capacity_the_oldest_audio_is_dropped_and_counted_never_an_event() -> None:
    outbox, link = make(capacity=3)
    link.set_ready(False)
    event(outbox, "started")
    for seq in range(1, 7):
        outbox.frame(seq % 2, seq, seq * 20, bytes([seq]))
    event(outbox, "stopped", final=True)
    assert outbox.audio_held == 3 and outbox.dropped == {"backpressure": [1, 2]}
    assert outbox.dropped_per_track() == [1, 2]
    link.set_ready(True)
    assert kinds(link) == ["started", "inbound:4", "outbound:5", "inbound:6", "stopped"]


def test_overflow_policy_close_raises_1013() -> None:
    outbox, link = make(capacity=2, drop_oldest=False)
    link.set_ready(False)
    outbox.frame(0, 1, 0, b"a")
    outbox.frame(0, 2, 20, b"b")
    with pytest.raises(BufferOverflow) as info:
        outbox.frame(0, 3, 40, b"c")
    assert info.value.close_code == CloseCode.TRY_AGAIN_LATER


def test_held_events_are_bounded_but_error_and_stopped_always_fit() -> None:
    outbox, link = make()
    link.set_ready(False)
    for _ in range(3):
        event(outbox, "dtmf")
    with pytest.raises(EventFlood) as info:
        event(outbox, "mark")
    assert info.value.close_code == CloseCode.POLICY_VIOLATION and info.value.reason == "event_flood"
    event(outbox, "error", final=True)
    event(outbox, "stopped", final=True)
    link.set_ready(True)
    assert kinds(link) == ["dtmf", "dtmf", "dtmf", "error", "stopped"]


def test_unconfirmed_messages_come_back_first_in_their_order() -> None:
    outbox, link = make(confirm=False)
    for seq in (1, 2, 3):
        outbox.frame(0, seq, seq * 20, bytes([seq]))
    assert link.lose_unconfirmed() == 3  # the connection broke before the broker confirmed them
    assert link.messages == [] and outbox.holding
    outbox.frame(0, 4, 80, b"\x04")
    link.set_ready(True)
    link.confirm_all()
    assert kinds(link) == ["inbound:1", "inbound:2", "inbound:3", "inbound:4"]


def test_events_given_back_by_the_link_do_not_count_against_the_provider_bound() -> None:
    outbox, link = make(confirm=False)  # max_events=3
    event(outbox, "started")
    event(outbox, "dtmf")
    assert link.lose_unconfirmed() == 2  # both events come back; the link is down
    for _ in range(3):
        event(outbox, "dtmf")  # the provider's three still fit beside the gateway's own two
    with pytest.raises(EventFlood):
        event(outbox, "mark")
    link.set_ready(True)
    link.confirm_all()
    assert kinds(link) == ["started", "dtmf", "dtmf", "dtmf", "dtmf"]
    assert outbox.events_held == 0 and not outbox.holding


def test_abandon_at_the_deadline_counts_what_is_left() -> None:
    outbox, link = make()
    link.set_ready(False)
    event(outbox, "started")
    outbox.frame(0, 1, 0, b"a")
    outbox.frame(1, 1, 0, b"b")
    assert outbox.abandon("shutdown") == 2
    assert outbox.dropped == {"shutdown": [1, 1]} and not outbox.holding and link.held == 0


def test_wire_encoding_round_trips_and_refuses_garbage() -> None:
    raw = encode("events.c", b'{"a":1}', {"Sgw-Event": "started", "X-Bad": "two\r\nlines"}) + encode("s", b"x")
    first, second = parse(raw)
    assert first.headers == {"Sgw-Event": "started", "X-Bad": "two  lines"} and first.payload == b'{"a":1}'
    assert (second.subject, second.payload, second.headers) == ("s", b"x", {})
    with pytest.raises(ValueError, match="unknown command"):
        list(parse(b"SUB x 1\r\n"))

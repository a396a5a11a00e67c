"""Routes with copies or a transform: the per-frame sink and the outbox that writes several subject
sets per frame, against the in-memory link (bounds, drops and resends are per frame)."""

from __future__ import annotations

from gateway.audio.transform import converter
from gateway.protocol.actions import EventOut, Started, StreamInfo
from gateway.protocol.events import Start
from gateway.protocol.media import Codec
from gateway.protocol.session import SessionConfig, StreamSession
from gateway.publish.fanout import FanoutOutbox
from gateway.publish.memory import MemoryPublisher
from gateway.publish.outbox import Outbox
from gateway.publish.wire import FrameTemplate
from gateway.transport.transcode import Fanout, Transformed, frame_sink, subject_sets
from sgw_routes.model import Copy, Route, RoutingTable, Transform

PCMU = Codec("PCMU", 8000)
L16_16K = Transform(sample_rate=16000)
TONE = bytes((0x80 + 17 * i) % 256 for i in range(160))


def info_for(route: Route, codec: Codec = PCMU) -> StreamInfo:
    session = StreamSession(tables=lambda: RoutingTable(routes=(route,)), config=SessionConfig())
    start = Start(
        stream_id="s-1",
        call_id="c-1",
        account_id="a-1",
        tracks=("inbound", "outbound"),
        codec=codec,
        custom_parameters={},
    )  # type: ignore[arg-type]
    started, event = session.receive(start, 0.0)
    assert isinstance(started, Started) and isinstance(event, EventOut)
    return started.info


def outbox_for(info: StreamInfo, link: MemoryPublisher, capacity: int = 10) -> Outbox:
    if info.copies:
        return FanoutOutbox(link, subject_sets(info), capacity=capacity, max_events=5)
    templates = [FrameTemplate(s, info.frame_headers) for s in info.audio_subjects]
    return Outbox(link, templates, capacity=capacity, max_events=5)


COPIES = Route(
    name="r",
    copies=(
        Copy(subject="asr.{call_id}.{track}", transform=L16_16K),
        Copy(subject="raw.{call_id}.{track}"),
        Copy(subject="asr2.{call_id}.{track}", transform=L16_16K),
    ),
)


def test_a_plain_route_and_a_transform_to_the_same_format_are_the_outbox_itself() -> None:
    for route, codec in ((Route(name="plain"), PCMU), (Route(name="same", transform=L16_16K), Codec("L16", 16000))):
        info = info_for(route, codec)
        outbox = outbox_for(info, MemoryPublisher())
        assert frame_sink(info, outbox) == outbox.frame  # nothing between the shell and the outbox


def test_a_transform_publishes_the_converted_frame_with_the_original_seq_and_ts() -> None:
    info = info_for(Route(name="asr", subject="asr.{call_id}.{track}", transform=L16_16K))
    link = MemoryPublisher()
    sink = frame_sink(info, outbox_for(info, link))
    assert isinstance(sink, Transformed)
    expected = converter(PCMU, Codec("L16", 16000))
    assert expected is not None
    for seq in (1, 2, 3):
        sink(1, seq, 20 * (seq - 1), TONE)
    assert [m.subject for m in link.messages] == ["asr.c-1.outbound"] * 3
    assert [m.payload for m in link.messages] == [expected(1, TONE) for _ in range(3)]
    assert [(m.headers["Sgw-Seq"], m.headers["Sgw-Ts"], m.headers["Sgw-Codec"]) for m in link.messages] == [
        ("1", "0", "L16/16000"),
        ("2", "20", "L16/16000"),
        ("3", "40", "L16/16000"),
    ]


def test_copies_every_subject_set_per_frame_each_format_converted_once() -> None:
    info = info_for(COPIES)
    link = MemoryPublisher()
    sink = frame_sink(info, outbox_for(info, link))
    assert isinstance(sink, Fanout)
    assert sink._picks == (0, 1, 0, 1)  # the original, L16/16000 (shared by two copies)
    expected = converter(PCMU, Codec("L16", 16000))
    assert expected is not None
    sink(0, 7, 120, TONE)
    converted = expected(0, TONE)
    assert [(m.subject, m.payload, m.headers["Sgw-Codec"]) for m in link.messages] == [
        ("audio.c-1.inbound", TONE, "PCMU/8000"),
        ("asr.c-1.inbound", converted, "L16/16000"),
        ("raw.c-1.inbound", TONE, "PCMU/8000"),
        ("asr2.c-1.inbound", converted, "L16/16000"),
    ]
    assert {(m.headers["Sgw-Seq"], m.headers["Sgw-Ts"], m.headers["Sgw-Stream-Id"]) for m in link.messages} == {
        ("7", "120", "s-1")
    }


def test_a_held_frame_is_all_its_messages_bounded_and_dropped_as_one() -> None:
    info = info_for(COPIES)
    link = MemoryPublisher()
    outbox = outbox_for(info, link, capacity=2)
    sink = frame_sink(info, outbox)
    link.set_ready(False)
    for seq in (1, 2, 3):
        sink(0, seq, 20 * seq, TONE)
    sink(1, 1, 20, TONE)
    # Capacity is in frames: 4 frames offered, 2 held, 2 dropped (each with its 4 messages).
    assert outbox.audio_held == 2 and outbox.held_per_track == [1, 1]
    assert outbox.dropped == {"backpressure": [2, 0]} and outbox.dropped_per_track() == [2, 0]
    link.set_ready(True)
    assert [(m.subject.split(".")[0], m.headers["Sgw-Seq"]) for m in link.messages] == [
        (name, seq) for seq in ("3", "1") for name in ("audio", "asr", "raw", "asr2")
    ]


def test_frames_lost_with_the_connection_come_back_whole_and_first() -> None:
    info = info_for(COPIES)
    link = MemoryPublisher(confirm=False)
    outbox = outbox_for(info, link)
    sink = frame_sink(info, outbox)
    sink(0, 1, 0, TONE)
    sink(1, 1, 0, TONE)
    assert len(link.messages) == 8
    assert link.lose_unconfirmed() == 2  # two writes, one per frame
    assert link.messages == [] and outbox.held_per_track == [1, 1]
    link.set_ready(True)
    assert [(m.subject, m.headers["Sgw-Seq"]) for m in link.messages] == [
        (f"{name}.c-1.{track}", "1") for track in ("inbound", "outbound") for name in ("audio", "asr", "raw", "asr2")
    ]


def test_a_transform_alone_keeps_the_plain_outbox() -> None:
    # A transform without copies is one subject set: the ordinary outbox (or the JetStream one).
    info = info_for(Route(name="asr", transform=Transform(sample_rate=8000)))
    assert not info.copies and len(subject_sets(info)) == 1
    outbox = outbox_for(info, MemoryPublisher())
    assert type(outbox) is Outbox and isinstance(frame_sink(info, outbox), Transformed)

"""The session's part in transforms: decided once at ``start``, said in ``Sgw-Codec`` and ``started``."""

from __future__ import annotations

from typing import Any

from gateway.protocol.actions import EventOut, Started, StreamInfo
from gateway.protocol.events import Media, Start
from gateway.protocol.media import Codec
from gateway.protocol.session import SessionConfig, StreamSession
from sgw_routes.model import Copy, Route, RoutingTable, Transform

L16_16K = Transform(sample_rate=16000)
PCMU = Codec("PCMU", 8000)


def begin(
    route: Route, codec: Codec = PCMU, tracks: tuple[str, ...] = ("inbound", "outbound")
) -> tuple[StreamSession, StreamInfo, dict[str, Any]]:
    session = StreamSession(
        tables=lambda: RoutingTable(version=1, routes=(route,)),
        config=SessionConfig(),
        traceparent=lambda _: "00-tp-01",
    )
    start = Start(stream_id="s-1", call_id="c-1", account_id="a-1", tracks=tracks, codec=codec, custom_parameters={})  # type: ignore[arg-type]
    started, event = session.receive(start, 0.0)
    assert isinstance(started, Started) and isinstance(event, EventOut)
    return session, started.info, event.body


def test_a_transformed_route_labels_its_frames_with_what_it_publishes() -> None:
    _, info, started = begin(Route(name="asr", subject="asr.{call_id}.{track}", transform=L16_16K))
    assert info.published_codec == Codec("L16", 16000) and info.transforms
    assert info.frame_headers == {"Sgw-Codec": "L16/16000", "Sgw-Stream-Id": "s-1", "traceparent": "00-tp-01"}
    assert info.audio_subjects == ("asr.c-1.inbound", "asr.c-1.outbound")
    assert (started["codec"], started["sample_rate"], started["published_codec"]) == ("PCMU/8000", 8000, "L16/16000")
    assert "copies" not in started and "transform_skipped" not in started


def test_copies_are_rendered_once_with_their_own_codec_header() -> None:
    route = Route(
        name="both",
        copies=(Copy(subject="asr.{call_id}.{track}", transform=L16_16K), Copy(subject="raw.{stream_id}.{track}")),
    )
    _, info, started = begin(route, tracks=("inbound",))
    assert info.published_codec is None and info.transforms
    assert info.frame_headers["Sgw-Codec"] == "PCMU/8000"
    first, second = info.copies
    assert first.subjects == ("asr.c-1.inbound", "asr.c-1.outbound") and first.codec == Codec("L16", 16000)
    assert first.headers == {"Sgw-Codec": "L16/16000", "Sgw-Stream-Id": "s-1", "traceparent": "00-tp-01"}
    assert second.subjects == ("raw.s-1.inbound", "raw.s-1.outbound") and second.codec is None
    assert second.headers["Sgw-Codec"] == "PCMU/8000"
    assert started["published_codec"] == "PCMU/8000"
    assert started["copies"] == [
        {"subjects": {"inbound": "asr.c-1.inbound"}, "codec": "L16/16000"},
        {"subjects": {"inbound": "raw.s-1.inbound"}, "codec": "PCMU/8000"},
    ]


def test_audio_already_in_the_target_format_is_not_transformed() -> None:
    _, info, started = begin(Route(name="asr", transform=L16_16K), codec=Codec("L16", 16000))
    assert info.published_codec is None and not info.transforms
    assert info.frame_headers["Sgw-Codec"] == "L16/16000" and started["published_codec"] == "L16/16000"


def test_a_codec_that_cannot_be_transformed_is_published_as_it_is_and_started_says_why() -> None:
    route = Route(name="asr", transform=L16_16K, copies=(Copy(subject="x.{track}", transform=L16_16K),))
    _, info, started = begin(route, codec=Codec("G722", 16000))
    assert info.published_codec is None and info.copies[0].codec is None
    assert info.frame_headers["Sgw-Codec"] == "G722/16000" and info.copies[0].headers["Sgw-Codec"] == "G722/16000"
    assert started["published_codec"] == "G722/16000"
    assert started["transform_skipped"] == "G722/16000 cannot be transformed to L16/16000"
    assert started["copies"][0]["transform_skipped"] == started["transform_skipped"]
    _, _, stereo = begin(Route(name="asr", transform=L16_16K), codec=Codec("L16", 16000, 2))
    assert "mono only" in stereo["transform_skipped"]


def test_sequence_accounting_stays_the_original_frames() -> None:
    # 160 bytes of PCMU are 20 ms whatever the route publishes: the media clock is the provider's.
    session, _, _ = begin(Route(name="asr", transform=Transform(sample_rate=48000)))
    for ts in (0, 20, 80):
        stats = session.media(Media(track="inbound", payload=bytes(160), timestamp=ts))
    assert (stats.seq, stats.ts, stats.gaps, stats.bytes) == (3, 80, 2, 480)


def test_a_jetstream_route_publishes_no_copies() -> None:
    # The manifest refuses the combination; a table that has it anyway gets no copies, and
    # started lists none.
    route = Route(name="js", jetstream_stream="CALLS", copies=(Copy(subject="x.{track}"),))
    _, info, started = begin(route)
    assert info.copies == () and not info.transforms and "copies" not in started

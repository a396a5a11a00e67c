"""The stream state machine, driven with canonical events and a fixed clock (no I/O)."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.errors import CloseCode, GatewayError, RemoteProtocolError, RouteNotFound, Unauthorized
from gateway.protocol.actions import Close, EventOut, FrameOut, Started
from gateway.protocol.auth import read_credentials
from gateway.protocol.events import (
    Connected,
    Dtmf,
    Ignored,
    Mark,
    Media,
    ProviderError,
    Reordered,
    Start,
    Stop,
    TrackName,
)
from gateway.protocol.media import Codec
from gateway.protocol.session import TRANSITIONS, SessionConfig, State, StreamSession
from sgw_routes.model import Route, RoutingTable, default_route, hash_token

NOW = 1_700_000_000.0
CONFIG = SessionConfig(max_payload_bytes=1000, secret_parameters=("token", "secret"))


def table(*routes: Route, default: bool = True) -> RoutingTable:
    return RoutingTable(version=3, routes=routes, default=default_route() if default else None)


def start(**kw: object) -> Start:
    base: dict[str, object] = {
        "stream_id": "s-1",
        "call_id": "c-1",
        "account_id": "a-1",
        "tracks": ("inbound", "outbound"),
        "codec": Codec("PCMU", 8000),
        "custom_parameters": {},
    }
    base.update(kw)
    return Start(**base)  # type: ignore[arg-type]


def media(track: TrackName, ts: int, payload: bytes = b"\x00" * 160) -> Media:
    return Media(track=track, payload=payload, timestamp=ts)


def session(t: RoutingTable | None = None, **kw: object) -> StreamSession:
    return StreamSession(tables=lambda: t or table(), config=CONFIG, traceparent=lambda _: "00-tp-01", **kw)  # type: ignore[arg-type]


def test_happy_path_actions_subjects_headers_and_events() -> None:
    s = session()
    assert s.receive(Connected(version="0.2.0"), NOW) == []
    actions = s.receive(start(custom_parameters={"tier": "gold", "api_token": "xyz"}), NOW)
    assert isinstance(actions[0], Started) and isinstance(actions[1], EventOut)
    info = actions[0].info
    assert info.audio_subjects == ("audio.c-1.inbound", "audio.c-1.outbound")
    assert info.events_subject == "events.c-1"
    assert info.frame_headers == {"Sgw-Codec": "PCMU/8000", "Sgw-Stream-Id": "s-1", "traceparent": "00-tp-01"}
    started = actions[1]
    assert started.subject == "events.c-1"
    assert started.body["type"] == "started"
    assert started.body["codec"] == "PCMU/8000" and started.body["sample_rate"] == 8000
    assert started.body["custom_parameters"] == {"tier": "gold", "api_token": "***"}
    assert started.body["control_id"] == "s-1"  # no path key, no control_id param: the stream id
    assert started.body["traceparent"] == "00-tp-01"
    assert {"call_id", "stream_id", "control_id", "ts", "traceparent"} <= set(started.body)
    assert started.headers == {
        "Sgw-Stream-Id": "s-1",
        "Sgw-Event": "started",
        "Sgw-Event-Seq": "1",
        "traceparent": "00-tp-01",
    }

    outs = []
    for i in range(3):
        for track in ("inbound", "outbound"):
            (out,) = s.receive(media(track, i * 20), NOW)
            assert isinstance(out, FrameOut)
            outs.append(out)
    inbound = [o for o in outs if o.track == "inbound"]
    assert [(o.seq, o.ts) for o in inbound] == [(1, 0), (2, 20), (3, 40)]
    stop_actions = s.receive(Stop(), NOW)
    stopped, close = stop_actions
    assert isinstance(stopped, EventOut) and stopped.body["type"] == "stopped"
    assert stopped.headers["Sgw-Event-Seq"] == "2"  # the stream's second event
    assert stopped.body["reason"] == "stop"
    assert stopped.body["tracks"]["inbound"]["frames"] == 3
    assert stopped.body["tracks"]["outbound"] == {
        "frames": 3,
        "bytes": 480,
        "gaps": 0,
        "duplicates": 0,
        "reordered": 0,
        "dropped": 0,
    }
    assert close == Close(1000, "stop")
    assert s.state is State.CLOSED
    assert s.finish("closed", NOW) == []  # idempotent: stop then close is one end


def test_missing_connected_is_tolerated() -> None:
    s = session()
    assert isinstance(s.receive(start(), NOW)[0], Started)


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ([media("inbound", 0)], "media_before_start"),
        ([Dtmf(digit="1")], "event_before_start"),
        ([Mark(name="m")], "event_before_start"),
        ([start(), start()], "duplicate_start"),
        ([start(), Connected()], "connected_after_start"),
        ([Connected(), Connected()], "duplicate_connected"),
        ([start(), media("inbound", 0, b"x" * 1001)], "payload_too_big"),
    ],
)
def test_order_violations_are_typed_errors(events: list[object], reason: str) -> None:
    s = session()
    *before, last = events
    for ev in before:
        s.receive(ev, NOW)  # type: ignore[arg-type]
    with pytest.raises(RemoteProtocolError) as info:
        s.receive(last, NOW)  # type: ignore[arg-type]
    assert info.value.reason == reason
    assert info.value.close_code == CloseCode.POLICY_VIOLATION


def test_every_state_and_event_kind_is_in_the_table() -> None:
    kinds = {Connected, Start, Media, Dtmf, Mark, Stop, Reordered, ProviderError, Ignored}
    assert set(TRANSITIONS[State.AWAIT_START]) == kinds
    assert set(TRANSITIONS[State.STREAMING]) == kinds
    assert TRANSITIONS[State.CLOSED] == {}


def test_fail_after_start_emits_error_stopped_close() -> None:
    s = session()
    s.receive(start(), NOW)
    s.receive(media("inbound", 0), NOW)
    err = RemoteProtocolError("bad", reason="malformed", close_code=CloseCode.INVALID_PAYLOAD)
    error, stopped, close = s.fail(err, NOW)
    assert isinstance(error, EventOut) and error.body["type"] == "error" and error.body["reason"] == "malformed"
    assert isinstance(stopped, EventOut) and stopped.body["reason"] == "error"
    assert close == Close(1007, "bad")
    assert s.fail(err, NOW) == []


def test_fail_before_start_only_closes() -> None:
    s = session()
    err = RemoteProtocolError("no start", reason="start_timeout")
    assert s.fail(err, NOW) == [Close(1008, "no start")]


def test_stop_before_start_closes_normally() -> None:
    assert session().receive(Stop(), NOW) == [Close(1000, "stopped before start")]


def test_unknown_events_are_ignored_and_counted() -> None:
    s = session()
    s.receive(Ignored(kind="unknown_event"), NOW)
    s.receive(start(), NOW)
    s.receive(Ignored(kind="unknown_event"), NOW)
    assert s.ignored == 2


def test_dtmf_and_mark_events() -> None:
    s = session()
    s.receive(start(), NOW)
    (dtmf,) = s.receive(Dtmf(digit="5", duration_ms=2000), NOW)
    (mark,) = s.receive(Mark(name="greeting"), NOW)
    assert isinstance(dtmf, EventOut) and dtmf.body["digit"] == "5" and dtmf.body["duration"] == 2000
    (nodur,) = s.receive(Dtmf(digit="1"), NOW)
    assert isinstance(nodur, EventOut) and "duration" not in nodur.body
    assert isinstance(mark, EventOut) and mark.body == {**mark.body, "type": "mark", "name": "greeting"}


def test_gaps_duplicates_reordering_are_counted_not_hidden() -> None:
    s = session()
    s.receive(start(), NOW)
    published = []
    for ts in (0, 20, 60, 60, 40, 80, 140):  # 40 late (reordered), 60 twice, 100 and 120 missing
        published += s.receive(media("inbound", ts), NOW)
    stats = s.tracks["inbound"]
    assert len(published) == 7  # every frame is published as received
    assert (stats.gaps, stats.duplicates, stats.reordered) == (3, 1, 1)
    seqs = [a.seq for a in published if isinstance(a, FrameOut)]
    assert seqs == list(range(1, 8))  # Sgw-Seq stays contiguous


def test_frame_duration_follows_codec_for_gap_detection() -> None:
    s = session()
    s.receive(start(codec=Codec("L16", 16000)), NOW)
    for ts in (0, 20, 40):
        s.receive(media("inbound", ts, b"\x00" * 640), NOW)  # 640 bytes = 20 ms at L16/16000
    assert s.tracks["inbound"].gaps == 0


def test_route_key_precedence_path_then_param_then_stream_id() -> None:
    routes = (
        Route(name="by-path", control_id="path-*", subject="p.{call_id}.{track}", label="by-path"),
        Route(name="by-param", control_id="param-*", subject="q.{control_id}.{track}", label="by-param"),
    )
    s = session(table(*routes), path_key="path-1")
    info = s.receive(start(custom_parameters={"control_id": "param-1"}), NOW)[0]
    assert isinstance(info, Started) and info.info.route.name == "by-path" and info.info.control_id == "path-1"
    s = session(table(*routes))
    info = s.receive(start(custom_parameters={"control_id": "param-1"}), NOW)[0]
    assert isinstance(info, Started) and info.info.route.name == "by-param"
    assert info.info.audio_subjects[0] == "q.param-1.inbound"


def test_no_route_without_default_is_refused() -> None:
    s = session(table(Route(name="only", control_id="x"), default=False))
    with pytest.raises(RouteNotFound) as info:
        s.receive(start(), NOW)
    assert info.value.close_code == CloseCode.POLICY_VIOLATION


@pytest.mark.parametrize(("token", "ok"), [("s3cret", True), ("wrong", False), (None, False)])
def test_credentials_checked_at_start(token: str | None, ok: bool) -> None:
    secured = Route(name="sec", control_id="*", token_sha256=hash_token("s3cret"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    s = session(table(secured, default=False), credentials=read_credentials(headers.get, "/stream"))
    if ok:
        assert isinstance(s.receive(start(), NOW)[0], Started)
        assert "s3cret" not in repr(s)
    else:
        with pytest.raises(Unauthorized) as info:
            s.receive(start(), NOW)
        assert info.value.close_message == "unauthorized" and s.info is None


def test_subject_placeholders_are_sanitised() -> None:
    route = Route(name="r", control_id="*", subject="a.{call_id}.{control_id}.{track}", events_subject="e.{call_id}")
    s = session(table(route, default=False), path_key="we.ird *key>")
    (started, _) = s.receive(start(call_id="ca.ll>*"), NOW)
    assert isinstance(started, Started)
    assert started.info.audio_subjects[1] == "a.ca_ll__.we_ird__key_.outbound"


def test_errors_share_one_base() -> None:
    assert issubclass(RemoteProtocolError, GatewayError) and issubclass(Unauthorized, GatewayError)


def test_media_without_timestamps_is_timed_by_its_bytes() -> None:
    """Providers without a media clock (binary audio): ``Sgw-Ts`` counts 20 ms per 160 PCMU bytes."""
    s = session()
    s.receive(start(), NOW)
    times = [s.media(Media(track="inbound", payload=b"\xff" * 160)).ts for _ in range(3)]
    assert times == [0, 20, 40]
    assert s.tracks["inbound"].gaps == 0


def test_unknown_track_is_malformed() -> None:
    s = session()
    s.receive(start(), NOW)
    with pytest.raises(RemoteProtocolError) as info:
        s.media(Media(track="sideways", payload=b"x"))  # type: ignore[arg-type]  # what a buggy dialect might build
    assert info.value.close_code == CloseCode.INVALID_PAYLOAD


def test_reordered_frames_reported_by_the_dialect_are_counted_per_track() -> None:
    s = session()
    s.receive(start(), NOW)
    s.receive(Reordered("outbound"), NOW)
    s.receive(Reordered("outbound"), NOW)
    assert s.tracks["outbound"].reordered == 2
    assert s.tracks["inbound"].reordered == 0


def test_the_route_is_chosen_by_the_provider_the_dialect_named() -> None:
    telnyx_only = Route(name="telnyx-only", control_id="*", providers=("telnyx",), subject="telnyx.{call_id}.{track}")
    routes = RoutingTable(routes=(telnyx_only,), default=default_route())
    for provider, subject in (("telnyx", "telnyx.c-1.inbound"), ("signalwire", "audio.c-1.inbound")):
        s = StreamSession(tables=lambda: routes, config=SessionConfig())
        actions = s.receive(dataclasses.replace(start(), provider=provider), NOW)
        info = next(a.info for a in actions if isinstance(a, Started))
        assert info.provider == provider
        assert info.audio_subjects[0] == subject

"""A bug in one stream's handler ends that stream only: 1011 to the provider, ``error`` and
``stopped`` to the consumers, one traceback in the log, one count in the metrics."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gateway.protocol.events import Media
from gateway.protocol.session import StreamSession, TrackStats
from gateway.tools.simulate import SimulateOptions, simulate
from tests.integration.gateway.conftest import RunningGateway


async def test_an_unexpected_exception_closes_only_its_stream_with_1011(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    healthy_media = StreamSession.media

    def faulty_media(self: StreamSession, event: Media) -> TrackStats:
        # The injected fault: a bug that hits one stream on its 10th inbound frame.
        if self.info is not None and self.info.control_id == "faulty" and self.tracks["inbound"].frames == 10:
            raise KeyError("injected fault")
        return healthy_media(self, event)

    monkeypatch.setattr(StreamSession, "media", faulty_media)
    caplog.set_level(logging.ERROR, logger="gateway")

    def options(control_id: str, **kw: Any) -> SimulateOptions:
        return SimulateOptions(url=gateway.ws_url, duration=1.0, realtime=True, control_id=control_id, **kw)

    faulty, healthy = await asyncio.gather(
        simulate(options("faulty")), simulate(options("healthy-{i}", calls=3, track="both"))
    )
    bad = faulty.calls[0]
    assert bad.close_code == 1011 and bad.closed_by_server
    await gateway.captured.wait_for(lambda: len(gateway.captured.events_of("stopped")) == 4)
    kinds = [e["type"] for e in gateway.captured.events if e["call_id"] == bad.call_id]
    assert kinds == ["started", "error", "stopped"]
    error = next(e for e in gateway.captured.events_of("error") if e["call_id"] == bad.call_id)
    assert (error["reason"], error["code"]) == ("internal", 1011)
    stopped = next(e for e in gateway.captured.events_of("stopped") if e["call_id"] == bad.call_id)
    assert stopped["reason"] == "error" and stopped["tracks"]["inbound"]["frames"] == 10
    await gateway.metric_reaches("sgw_internal_errors_total", 1)
    await gateway.metric_reaches("sgw_streams_closed_total", 1, code="1011")
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1 and "injected fault" in str(tracebacks[0].exc_info[1])  # type: ignore[index]

    for call in healthy.calls:
        assert (call.close_code, call.error) == (1000, None)
        for track in call.tracks:
            await gateway.captured.wait_for(
                lambda c=call, t=track: (
                    len([m for m in gateway.captured.audio if m.subject == f"audio.{c.call_id}.{t}"]) == len(c.sent[t])
                )
            )
            got = [m.data for m in gateway.captured.audio if m.subject == f"audio.{call.call_id}.{track}"]
            assert got == call.sent[track]

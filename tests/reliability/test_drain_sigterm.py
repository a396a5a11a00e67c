"""Graceful drain of a real ``streamgw serve`` process on SIGTERM (docs/design.md section 3, docs/conventions.md section 8).

Two kinds of calls are live when the signal arrives: short ones that end before the drain
deadline (they must lose nothing and end normally) and long ones that outlive it (they are closed
with 1001, and every frame the gateway accepted up to then still reaches NATS, ``stopped`` last).
"""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from gateway.embedded_nats import EmbeddedNats
from gateway.tools.simulate import SimulateOptions, simulate
from tests.reliability.conftest import ProcessFactory, RecorderFactory
from tests.reliability.harness import call_done, eventually, eventually_async, verify_call
from tests.reliability.process import serve_env

DRAIN_SECONDS = 4.0


async def _status(url: str) -> int:
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            return resp.status
    except aiohttp.ClientError:
        return -1


@pytest.mark.timeout(120)
async def test_sigterm_drains_live_streams_then_exits_zero(
    nats_server: EmbeddedNats, process_factory: ProcessFactory, recorder_factory: RecorderFactory
) -> None:
    rec = await recorder_factory(nats_server.url)
    gp = await process_factory(serve_env(nats_server.url, SHUTDOWN__DRAIN_SECONDS=str(DRAIN_SECONDS)))
    readyz = gp.internal_url + "/readyz"
    assert await _status(readyz) == 200

    short = asyncio.create_task(
        simulate(SimulateOptions(url=gp.ws_url, calls=2, track="both", duration=3.0, realtime=True, seed=1))
    )
    long = asyncio.create_task(
        simulate(SimulateOptions(url=gp.ws_url, calls=2, track="both", duration=30.0, realtime=True, seed=2))
    )
    # Signal once all four calls are streaming (about half a second of audio each).
    await eventually(lambda: len(rec.audio) == 8 and all(len(v) > 25 for v in rec.audio.values()), 10, "streaming")

    t_signal = time.time()
    gp.send_signal(signal.SIGTERM)
    await eventually_async(lambda: _coro_eq(_status(readyz), 503), 5, "/readyz 503 after SIGTERM")
    unready_ms = (time.time() - t_signal) * 1000

    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(gp.ws_url)
    assert refused.value.status == 503

    short_report = await short
    for call in short_report.calls:
        assert call.ended_at < t_signal + DRAIN_SECONDS, "a short call must end before the deadline"
    long_report = await long
    close_after = [call.ended_at - t_signal for call in long_report.calls]
    code = await gp.wait(30)
    exit_after = time.time() - t_signal

    everything = short_report.calls + long_report.calls
    await eventually(lambda: all(call_done(rec, c) for c in everything), 15, "all frames and stopped events")
    short_frames = sum(verify_call(rec, call) for call in short_report.calls)
    long_frames = 0
    for call in long_report.calls:
        assert call.error is None, call.error
        assert call.close_code == 1001, (call.close_code, call.close_reason)
        events = rec.events[call.call_id]
        assert [events[0]["type"], events[-1]["type"]] == ["started", "stopped"]
        assert events[-1]["reason"] == "shutdown"
        for track in call.tracks:
            accepted = events[-1]["tracks"][track]["frames"]
            got = rec.audio[(call.call_id, track)]
            assert [f.seq for f in got] == list(range(1, accepted + 1)), f"{call.call_id}/{track}"
            assert [f.payload for f in got] == call.sent[track][:accepted]
            # The stream kept going through the drain: about 50 frames/s until the 1001.
            streamed = call.ended_at - call.started_at
            assert accepted >= (streamed - 1.0) * 50, (accepted, streamed)
            long_frames += accepted

    figures = (
        f"drain: /readyz 503 {unready_ms:.0f} ms after SIGTERM; new upgrade refused 503; "
        f"{len(short_report.calls)} short calls ended normally with {short_frames} frames, all delivered; "
        f"{len(long_report.calls)} long calls closed 1001 at {', '.join(f'{t:.2f}' for t in close_after)} s "
        f"(deadline {DRAIN_SECONDS} s) with {long_frames} frames, all delivered; "
        f"process exited {code} after {exit_after:.2f} s"
    )
    print(figures)
    assert unready_ms < 1000, figures
    for t in close_after:
        assert DRAIN_SECONDS - 0.2 <= t <= DRAIN_SECONDS + 3.0, figures
    assert code == 0, figures + "\n" + gp.text()
    assert "Traceback" not in gp.text() and " ERROR " not in gp.text(), gp.text()


async def _coro_eq(coro: object, value: int) -> bool:
    assert asyncio.iscoroutine(coro)
    return bool(await coro == value)

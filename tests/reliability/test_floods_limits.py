"""Floods and limits: the stream limit, repeated bad tokens, message and header size limits.

Every flood is bounded (a few hundred requests, loopback only) and runs next to live calls whose
frames must all arrive: a limit that protects the process by hurting the calls it already holds
would not be a limit worth having.
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import time
from collections import Counter
from pathlib import Path

import pytest

from gateway.embedded_nats import EmbeddedNats
from gateway.tools.simulate import SimulateOptions, simulate
from tests.reliability import frames as f
from tests.reliability.capture import create_capture_stream, read_capture
from tests.reliability.conftest import GatewayFactory, RecorderFactory
from tests.reliability.harness import ErrorWatch, RunningGateway, call_done, eventually, verify_call
from tests.reliability.rawws import RawWebSocket, http_request

TOKEN = "flood-route-t0ken"


def write_secured_routes(tmp_path: Path) -> tuple[Path, Path]:
    """A StreamRoute with a bearer token from a Secret, in file mode (docs/design.md section 6)."""
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        """
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: secured}
spec:
  match: {controlId: "sec-*"}
  auth: {bearerTokenSecretRef: {name: stream-token, key: token}}
  target: {subject: "audio.{call_id}.{track}", eventsSubject: "events.{call_id}"}
"""
    )
    secrets = tmp_path / "secrets"
    (secrets / "stream-token").mkdir(parents=True)
    (secrets / "stream-token" / "token").write_text(TOKEN + "\n")
    return routes, secrets


@pytest.mark.timeout(120)
async def test_connection_flood_over_the_stream_limit_is_refused_at_upgrade(
    nats_server: EmbeddedNats,
    gateway_factory: GatewayFactory,
    recorder_factory: RecorderFactory,
    error_watch: ErrorWatch,
) -> None:
    limit, live_calls, flood = 20, 5, 300
    gw = await gateway_factory(nats_server.url, **{"server.max_streams": limit, "websocket.start_timeout": 10.0})
    rec = await recorder_factory(nats_server.url)
    live = asyncio.create_task(
        simulate(SimulateOptions(url=gw.ws_url, calls=live_calls, track="both", duration=4.0, realtime=True))
    )
    await eventually(lambda: gw.metric("sgw_streams_active") == live_calls, 10, "live calls started")

    t0 = time.monotonic()
    sockets = await asyncio.gather(*(RawWebSocket.connect(gw.ws_url) for _ in range(flood)))
    flood_seconds = time.monotonic() - t0
    statuses = Counter(s.handshake.status for s in sockets)
    held = len(gw.server.ctx.registry) if gw.server.ctx else -1
    for sock in sockets:
        await sock.aclose()

    report = await live
    await eventually(lambda: all(call_done(rec, c) for c in report.calls), 15, "live calls delivered")
    delivered = sum(verify_call(rec, call) for call in report.calls)
    rejected = gw.metric("sgw_ws_upgrades_rejected_total", reason="stream_limit")
    figures = (
        f"connection flood: {flood} upgrades in {flood_seconds:.2f}s against max_streams={limit} with "
        f"{live_calls} live calls: statuses {dict(statuses)}, streams held {held}, "
        f"sgw_ws_upgrades_rejected_total{{stream_limit}}={rejected:.0f}; live calls: {delivered} frames, all delivered"
    )
    print(figures)
    assert statuses[101] == limit - live_calls, figures
    assert statuses[503] == flood - (limit - live_calls), figures
    assert held == limit, figures
    assert rejected == statuses[503], figures
    assert not error_watch.problems(), error_watch.problems()


@pytest.mark.timeout(120)
async def test_repeated_bad_tokens_are_refused_cheaply_before_upgrade(
    nats_server: EmbeddedNats,
    gateway_factory: GatewayFactory,
    recorder_factory: RecorderFactory,
    error_watch: ErrorWatch,
    tmp_path: Path,
) -> None:
    routes, secrets = write_secured_routes(tmp_path)
    gw = await gateway_factory(
        nats_server.url,
        **{"routing.source": "file", "routing.file": routes, "routing.secrets_dir": secrets},
    )
    rec = await recorder_factory(nats_server.url)
    good = asyncio.create_task(
        simulate(
            SimulateOptions(url=gw.ws_url, calls=2, duration=3.0, realtime=True, control_id="sec-good-{i}", token=TOKEN)
        )
    )
    await eventually(lambda: gw.metric("sgw_streams_active") == 2, 10, "good calls started")

    wrong, missing = 300, 100

    async def attempt(i: int) -> tuple[int, float]:
        headers = {"Authorization": f"Bearer wrong-{i}"} if i < wrong else {}
        t = time.perf_counter()
        ws = await RawWebSocket.connect(f"{gw.ws_url}/sec-{i}", headers=headers)
        elapsed = time.perf_counter() - t
        await ws.aclose()
        return ws.handshake.status, elapsed

    # One at a time for the cost of a single refusal, then in waves of 50 for throughput.
    results = [await attempt(i) for i in range(0, wrong + missing, 4)]
    latencies = sorted(elapsed for _, elapsed in results)
    t0 = time.perf_counter()
    for wave in range(0, wrong + missing, 50):
        results += await asyncio.gather(*(attempt(i) for i in range(wave, wave + 50) if i % 4))
    rate = (len(results) - len(latencies)) / (time.perf_counter() - t0)
    report = await good

    statuses = Counter(status for status, _ in results)
    await eventually(lambda: all(call_done(rec, c) for c in report.calls), 15, "good calls delivered")
    delivered = sum(verify_call(rec, call) for call in report.calls)
    invalid = gw.metric("sgw_auth_failures_total", reason="invalid")
    absent = gw.metric("sgw_auth_failures_total", reason="missing")
    streams_opened = gw.metric("sgw_streams_closed_total")  # every socket that was upgraded
    figures = (
        f"bad tokens: {wrong} wrong + {missing} missing -> statuses {dict(statuses)}; "
        f"sgw_auth_failures_total invalid={invalid:.0f} missing={absent:.0f}; refusal latency "
        f"p50 {statistics.median(latencies) * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms one at a time, "
        f"{rate:.0f}/s in waves of 50; "
        f"sockets upgraded meanwhile {streams_opened:.0f} (the 2 good calls); good calls {delivered} frames delivered"
    )
    print(figures)
    assert statuses == Counter({401: wrong + missing}), figures
    assert (invalid, absent) == (wrong, missing), figures
    assert streams_opened == len(report.calls), figures
    assert statistics.median(latencies) < 0.02, figures
    assert not error_watch.problems(), error_watch.problems()


def media_of_exact_size(size: int) -> str:
    """A valid media message padded with an unknown field to exactly ``size`` bytes."""
    base = {"event": "media", "media": {"track": "inbound", "payload": base64.b64encode(b"\xff" * 160).decode()}}
    empty = len(json.dumps({**base, "pad": ""}))
    return json.dumps({**base, "pad": "x" * (size - empty)})


async def test_message_size_limit_is_exact(
    nats_server: EmbeddedNats, gateway_factory: GatewayFactory, recorder_factory: RecorderFactory
) -> None:
    gw = await gateway_factory(nats_server.url)
    rec = await recorder_factory(nats_server.url)
    limit = gw.settings.websocket.max_message_bytes
    outcomes = {}
    for size in (limit, limit + 1):
        message = media_of_exact_size(size)
        assert len(message.encode()) == size
        ws = await RawWebSocket.connect(gw.ws_url)
        await ws.send_text(f.start(f"size-{size}"))
        await ws.send_text(message)
        await ws.send_text(f.stop())
        outcomes[size] = await ws.close_code()
        await ws.aclose()
    await eventually(lambda: rec.stopped(f"size-{limit}") is not None, 10, "stopped")
    print(f"message size limit {limit}: {limit} bytes -> {outcomes[limit]}, {limit + 1} bytes -> {outcomes[limit + 1]}")
    assert outcomes == {limit: 1000, limit + 1: 1009}
    assert len(rec.audio[(f"size-{limit}", "inbound")]) == 1


async def _plain_request(gw: RunningGateway, extra_headers: str, path: str = "/stream") -> int:
    raw = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}\r\n".encode()
    return (await http_request(gw.ws_url, raw)).status


async def test_oversized_http_headers_are_refused(
    nats_server: EmbeddedNats, gateway_factory: GatewayFactory, error_watch: ErrorWatch
) -> None:
    """aiohttp's defaults hold: 8190 bytes per request line and per header, at most 128 headers."""
    gw = await gateway_factory(nats_server.url)
    cases = {
        "header value 8 KiB + 1": f"X-Big: {'a' * 8191}\r\n",
        "header value 64 KiB": f"X-Big: {'a' * 65536}\r\n",
        "header name 9 KiB": f"X-{'n' * 9000}: 1\r\n",
        "200 headers": "".join(f"X-H{i}: v\r\n" for i in range(200)),
        "Authorization 16 KiB": f"Authorization: Bearer {'t' * 16384}\r\n",
    }
    results = {name: await _plain_request(gw, headers) for name, headers in cases.items()}
    results["request line 16 KiB"] = await _plain_request(gw, "", "/stream/" + "p" * 16384)
    fine = await RawWebSocket.connect(gw.ws_url, headers={"X-Fine": "a" * 4000})
    await fine.aclose()
    print(f"header limits: {results}; an upgrade with a 4 KB header still gets {fine.handshake.status}")
    assert all(status in (400, 413, 414, 431) for status in results.values()), results
    assert fine.handshake.status == 101
    assert not error_watch.problems(), error_watch.problems()


async def test_an_event_flood_while_nats_is_down_is_bounded_counted_and_closed(
    nats_server: EmbeddedNats, gateway_factory: GatewayFactory
) -> None:
    """Audio has its buffer bound; events have theirs. A provider that floods DTMF while NATS cannot
    take events is closed (1008) at ``buffer.max_events``; the refusal is counted; once NATS is back
    the stream's events still end with ``error`` and ``stopped``, and a calm stream is unaffected.
    The broker's own store is the witness (see ``capture.py``): it outlives the restart."""
    await create_capture_stream(nats_server.url)
    gw = await gateway_factory(nats_server.url, **{"buffer.max_events": 50})
    calm = await RawWebSocket.connect(gw.ws_url)
    flooder = await RawWebSocket.connect(gw.ws_url)
    await calm.send_text(f.start("calm"))
    await flooder.send_text(f.start("flooder"))
    await eventually(lambda: gw.metric("sgw_events_published_total", reason="started") == 2, 10, "both started")
    await nats_server.stop()
    await eventually(lambda: gw.metric("sgw_nats_connected") == 0, 10, "the gateway sees NATS down")
    for digit in range(200):
        await flooder.send_text(json.dumps({"event": "dtmf", "sequenceNumber": str(digit + 2), "dtmf": {"digit": "1"}}))
    for n in range(3):
        await calm.send_text(json.dumps({"event": "dtmf", "sequenceNumber": str(n + 2), "dtmf": {"digit": "5"}}))
    code = await flooder.close_code()
    await flooder.aclose()
    refused = gw.metric("sgw_events_dropped_total", reason="flood")
    print(
        f"event flood: 200 DTMF with NATS down, max_events=50 -> close {code} "
        f"({flooder.close_reason!r}), refused {refused:.0f}"
    )
    assert code == 1008 and "flood" in flooder.close_reason
    assert refused == 1
    assert gw.metric("sgw_protocol_errors_total", reason="event_flood") == 1

    await nats_server.start()
    await calm.send_text(f.stop())
    assert await calm.close_code() == 1000
    await calm.aclose()
    await eventually(gw.idle, 15, "both buffers emptied after the restart")
    capture = await read_capture(nats_server.url)
    # The broker stopped a moment after confirming both `started` events: they may have been sent
    # again (the link's resend window), and the capture skips such copies as a consumer would.
    print(f"event copies sent again after the restart: {capture.event_copies}")
    flooder_events = [e["type"] for e in capture.events["flooder"]]
    assert flooder_events == ["started", *["dtmf"] * 50, "error", "stopped"]
    assert [e["type"] for e in capture.events["calm"]] == ["started", "dtmf", "dtmf", "dtmf", "stopped"]

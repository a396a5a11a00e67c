"""A corpus of hostile inputs against the real server, while good calls stream next to them.

Each hostile socket must be closed with its defined code (``gateway/errors.py``: 1007 malformed,
1003 binary, 1009 too big, 1008 order violations and timeouts, 1002 broken WebSocket framing),
each rejection counted under its reason, nothing may reach the server's error log or the loop's
exception handler, and every frame of every concurrent good call must arrive.

Defined behaviour for inputs that are odd but not fatal: unknown ``event`` kinds are ignored and
counted in ``sgw_messages_ignored_total`` (the socket stays open); payloads of an unusual size
(within ``websocket.max_frame_payload_bytes``) are forwarded unchanged, since providers do send
short frames; a ``stop`` before ``start`` ends the socket normally (1000); a slow sender is fine
as long as each message completes within the timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from gateway.embedded_nats import EmbeddedNats
from tests.reliability import frames as f
from tests.reliability.conftest import GatewayFactory, RecorderFactory
from tests.reliability.harness import (
    CallLanes,
    ErrorWatch,
    RunningGateway,
    call_done,
    eventually,
    stopped_arrived,
    verify_call,
)
from tests.reliability.rawws import OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, RawWebSocket, encode_frame

START_TIMEOUT = 1.0
Wire = str | bytes | tuple[int, bytes] | tuple[int, bytes, bool]
"""Text (str or raw bytes sent as a text frame), or (opcode, payload[, fin])."""


async def send_all(ws: RawWebSocket, messages: list[Wire]) -> None:
    for message in messages:
        with contextlib.suppress(ConnectionError):
            if isinstance(message, tuple):
                opcode, payload, *fin = message
                await ws.send(opcode, payload, fin=fin[0] if fin else True)
            else:
                await ws.send_text(message)


async def socket_with(gw: RunningGateway, messages: list[Wire]) -> int | None:
    ws = await RawWebSocket.connect(gw.ws_url)
    assert ws.handshake.status == 101, ws.handshake
    try:
        await send_all(ws, messages)
        return await ws.close_code()
    finally:
        await ws.aclose()


def scripted(*messages: Wire) -> Callable[[RunningGateway], Awaitable[int | None]]:
    async def run(gw: RunningGateway) -> int | None:
        return await socket_with(gw, list(messages))

    return run


async def never_sends(gw: RunningGateway) -> int | None:
    ws = await RawWebSocket.connect(gw.ws_url)
    try:
        return await ws.close_code()
    finally:
        await ws.aclose()


async def drip_start_too_slowly(gw: RunningGateway) -> int | None:
    """A slowloris start message: 20 ms a byte, so it cannot finish within the start timeout."""
    ws = await RawWebSocket.connect(gw.ws_url)
    drip = asyncio.create_task(ws.drip(encode_frame(OP_TEXT, f.start("drip-slow").encode()), 0.02))
    try:
        return await ws.close_code()
    finally:
        drip.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await drip
        await ws.aclose()


async def drip_media_within_timeouts(gw: RunningGateway) -> int | None:
    ws = await RawWebSocket.connect(gw.ws_url)
    try:
        await ws.send_text(f.start("drip-ok"))
        await ws.drip(encode_frame(OP_TEXT, f.media(0).encode()), 0.002)
        await ws.send_text(f.stop())
        return await ws.close_code()
    finally:
        await ws.aclose()


async def connect_and_vanish(gw: RunningGateway) -> int | None:
    ws = await RawWebSocket.connect(gw.ws_url)
    await ws.aclose()
    return None


async def tcp_without_http(gw: RunningGateway) -> int | None:
    host, port = gw.ws_url.split("//")[1].split("/")[0].split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.close()
    await writer.wait_closed()
    return None


async def plain_get(gw: RunningGateway) -> int | None:
    async with aiohttp.ClientSession() as http, http.get(gw.ws_url.replace("ws://", "http://")) as resp:
        return resp.status


def status_post(body: bytes) -> Callable[[RunningGateway], Awaitable[int | None]]:
    async def run(gw: RunningGateway) -> int | None:
        url = gw.ws_url.replace("ws://", "http://").replace("/stream", "/status")
        headers = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as resp:
            return resp.status

    return run


def rsv_bits_set() -> bytes:
    frame = bytearray(encode_frame(OP_TEXT, f.connected().encode()))
    frame[0] |= 0x40  # RSV1 without a negotiated extension
    return bytes(frame)


async def raw_bytes_after_upgrade(gw: RunningGateway, data: bytes) -> int | None:
    ws = await RawWebSocket.connect(gw.ws_url)
    try:
        ws.writer.write(data)
        await ws.writer.drain()
        return await ws.close_code()
    finally:
        await ws.aclose()


def huge_declared_length() -> bytes:
    # A header announcing 2**40 bytes and no payload: must be refused from the header alone.
    return bytes([0x80 | OP_TEXT, 0x80 | 127]) + struct.pack("!Q", 1 << 40) + b"\x00\x00\x00\x00"


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[RunningGateway], Awaitable[int | None]]
    expect: int | None
    """Close code (WebSocket), HTTP status (plain requests), or None (the client left first)."""
    reason: str | None = None
    """``sgw_protocol_errors_total`` reason this case must add one to."""
    ignored: int = 0


S = f.start
BIG = 70_000  # over websocket.max_message_bytes (64 KiB)

CORPUS: list[Case] = [
    Case("invalid json", scripted(S("c-json"), "{not json"), 1007, "malformed"),
    Case("invalid utf-8 text", scripted(S("c-utf8"), b'{"event":"media\xff\xfe"}'), 1007, "malformed"),
    Case("invalid utf-8 first frame", scripted(b"\xc3\x28"), 1007, "malformed"),
    Case("binary frame", scripted(S("c-bin"), (OP_BINARY, b"\x00\x01\x02")), 1003, "binary_frame"),
    Case("binary before start", scripted((OP_BINARY, b"\xff" * 160)), 1003, "binary_frame"),
    Case(
        "invalid base64",
        scripted(S("c-b64"), '{"event":"media","media":{"track":"inbound","payload":"@@@="}}'),
        1007,
        "malformed",
    ),
    Case("payload too large", scripted(S("c-bigpay"), f.media(0, b"\x00" * 20_000)), 1008, "payload_too_big"),
    Case("message over max_message_bytes", scripted(S("c-big"), "x" * BIG), 1009, "too_big"),
    Case(
        "fragments over max_message_bytes",
        scripted(S("c-frag"), (OP_TEXT, b"[" * 40_000, False), (OP_CONT, b"]" * 40_000, True)),
        1009,
        "too_big",
    ),
    Case("declared length 2**40", lambda gw: raw_bytes_after_upgrade(gw, huge_declared_length()), 1009, "too_big"),
    Case("deep nesting", scripted(f.nested(20_000)), 1007, "malformed"),
    Case("JSON array", scripted("[1,2,3]"), 1007, "malformed"),
    Case("JSON null", scripted("null"), 1007, "malformed"),
    Case(
        "counter out of range",
        scripted(S("c-range"), '{"event":"media","sequenceNumber":1' + "0" * 30 + ',"media":{"payload":""}}'),
        1007,
        "malformed",
    ),
    Case(
        "negative counter",
        scripted(S("c-neg"), '{"event":"media","media":{"track":"inbound","timestamp":"-20","payload":""}}'),
        1007,
        "malformed",
    ),
    Case("NaN", scripted(S("c-nan"), '{"event":"media","media":{"timestamp":NaN,"payload":""}}'), 1007, "malformed"),
    Case(
        "sample rate 0",
        scripted(S("c-rate").replace('"sampleRate": 8000', '"sampleRate": 0')),
        1007,
        "malformed",
    ),
    Case("start without callSid", scripted(S("c-nocall").replace('"callSid": "c-nocall", ', "")), 1007, "malformed"),
    Case("unknown track", scripted(S("c-track"), f.media(0, track="sideways")), 1007, "malformed"),
    Case("media without body", scripted(S("c-nobody"), '{"event":"media"}'), 1007, "malformed"),
    Case("media before start", scripted(f.media(0)), 1008, "media_before_start"),
    Case("dtmf before start", scripted('{"event":"dtmf","dtmf":{"digit":"1"}}'), 1008, "event_before_start"),
    Case("second start", scripted(S("c-twice"), f.media(0), S("c-twice")), 1008, "duplicate_start"),
    Case(
        "interleaved streams",
        scripted(S("c-one", stream_id="MZ-one"), f.media(0), S("c-two", stream_id="MZ-two"), f.media(0)),
        1008,
        "duplicate_start",
    ),
    Case("connected after start", scripted(S("c-conn"), f.connected()), 1008, "connected_after_start"),
    Case("duplicate connected", scripted(f.connected(), f.connected()), 1008, "duplicate_connected"),
    Case("never sends anything", never_sends, 1008, "start_timeout"),
    Case("start dripped too slowly", drip_start_too_slowly, 1008, "start_timeout"),
    Case("RSV bits set", lambda gw: raw_bytes_after_upgrade(gw, rsv_bits_set()), 1002, "ws_error"),
    Case("fragmented ping", scripted((OP_PING, b"x", False)), 1002, "ws_error"),
    # Odd but defined: the socket stays usable and ends normally.
    Case(
        "unknown events",
        scripted(S("c-unknown"), '{"event":"somethingNew"}', f.media(0), '{"event":"x","y":[1,{}]}', f.stop()),
        1000,
        ignored=2,
    ),
    Case("payloads of unusual size", scripted(S("c-size"), f.media(0, b"\x7f" * 7), f.media(20, b""), f.stop()), 1000),
    Case("stop before start", scripted(f.stop()), 1000),
    Case("close frame first", scripted((OP_CLOSE, struct.pack("!H", 1000))), 1000),
    Case("media dripped slowly but in time", drip_media_within_timeouts, 1000),
    Case("connect and vanish", connect_and_vanish, None),
    Case("TCP without HTTP", tcp_without_http, None),
    Case("GET without upgrade", plain_get, 400),
    Case("/status invalid JSON", status_post(b"{nope"), 400),
    Case("/status deep nesting", status_post(b"[" * 30_000 + b"]" * 30_000), 400),
    Case("/status body over 64 KiB", status_post(b"x" * 100_000), 413),
]


@pytest.mark.timeout(180)
async def test_hostile_corpus_closes_each_socket_with_its_code(
    nats_server: EmbeddedNats,
    gateway_factory: GatewayFactory,
    recorder_factory: RecorderFactory,
    error_watch: ErrorWatch,
) -> None:
    # /status explicitly open: the corpus aims at the body parsing behind authentication.
    gw = await gateway_factory(
        nats_server.url, **{"websocket.start_timeout": START_TIMEOUT, "status.allow_unauthenticated": True}
    )
    rec = await recorder_factory(nats_server.url)
    lanes = CallLanes(gw.ws_url, lanes=3, duration=2.0)
    lanes.start()
    await eventually(lambda: rec.messages > 50, 10, "good calls streaming")

    outcomes = await asyncio.gather(*(case.run(gw) for case in CORPUS))
    good = await lanes.stop()

    wrong = [(c.name, c.expect, got) for c, got in zip(CORPUS, outcomes, strict=True) if got != c.expect]
    assert not wrong, f"closed with the wrong code (name, expected, got): {wrong}"

    expected = Counter(c.reason for c in CORPUS if c.reason)
    await eventually(gw.idle, 20, "every hostile socket finished")
    counted = {reason: int(gw.metric("sgw_protocol_errors_total", reason=reason)) for reason in expected}
    assert counted == dict(expected), f"protocol errors counted {counted}, expected {dict(expected)}"
    ignored = gw.metric("sgw_messages_ignored_total", reason="unknown_event")
    assert ignored == sum(c.ignored for c in CORPUS)
    # The tolerated cases published what they sent: one frame, two of odd size, one dripped.
    for call_id, frames in (("c-unknown", 1), ("c-size", 2), ("drip-ok", 1)):
        await eventually(stopped_arrived(rec, call_id), 10, f"{call_id} stopped")
        assert len(rec.audio[(call_id, "inbound")]) == frames, call_id
    assert [fr.payload for fr in rec.audio[("c-size", "inbound")]] == [b"\x7f" * 7, b""]

    await eventually(lambda: all(call_done(rec, c) for c in good), 15, "good calls delivered")
    delivered = sum(verify_call(rec, call) for call in good)
    closes = Counter(str(code) for code in outcomes)
    figures = (
        f"hostile corpus: {len(CORPUS)} cases, outcomes {dict(sorted(closes.items()))}, protocol errors "
        f"{dict(sorted(counted.items()))}, ignored {ignored:.0f}; {len(good)} concurrent good calls, "
        f"{delivered} frames, all delivered"
    )
    print(figures)
    assert not error_watch.problems(), f"{error_watch.problems()} ({figures})"


async def test_hostile_sockets_in_bulk_leave_nothing_behind(
    nats_server: EmbeddedNats, gateway_factory: GatewayFactory, error_watch: ErrorWatch
) -> None:
    """Hundreds of abrupt and malformed sockets at once: afterwards no socket, task or buffer remains."""
    gw = await gateway_factory(nats_server.url, **{"websocket.start_timeout": START_TIMEOUT})
    baseline = len(asyncio.all_tasks())
    kinds = [connect_and_vanish, scripted("{not json"), scripted(S("bulk"), (OP_BINARY, b"x")), tcp_without_http]
    outcomes = await asyncio.gather(*(kinds[i % len(kinds)](gw) for i in range(400)), return_exceptions=True)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors, errors[:3]
    await eventually(gw.idle, 20, "every socket finished")
    await eventually(lambda: gw.metric("sgw_ws_connections_active") == 0, 10, "no connection left")
    await eventually(lambda: len(asyncio.all_tasks()) <= baseline, 10, f"tasks back to {baseline}")
    print(
        f"bulk hostile sockets: 400 opened, tasks {baseline} -> {len(asyncio.all_tasks())}, "
        f"closed by code {json.dumps(Counter(str(o) for o in outcomes))}"
    )
    assert not error_watch.problems(), error_watch.problems()

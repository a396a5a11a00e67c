"""Vonage and jambonz (binary audio after a JSON greeting) through a real gateway and nats-server.

The client is a real WebSocket client (aiohttp), speaking the provider's side: the greeting text
frame, binary audio, the provider's text events, and the back-channel it would receive.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import struct
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from nats.aio.msg import Msg

from gateway.protocol.dialects.jambonz import JambonzDialect
from gateway.protocol.dialects.vonage import VonageDialect
from gateway.protocol.events import Dtmf, Mark, Media
from tests.helpers import eventually
from tests.integration.gateway.conftest import RunningGateway
from tests.replay import Frame, load, replay

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CALL_SID = "2f1c6a0e-4f7b-4d0a-9a55-1c1d7e5b9f20"


@asynccontextmanager
async def provider_socket(url: str, protocols: tuple[str, ...] = ()) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with aiohttp.ClientSession() as http, http.ws_connect(url, protocols=protocols) as ws:
        yield ws


async def receive(ws: aiohttp.ClientWebSocketResponse) -> tuple[str, Any]:
    """The next frame the gateway sends: ("binary", bytes) or ("text", parsed JSON)."""
    msg = await ws.receive(timeout=10)
    if msg.type is aiohttp.WSMsgType.BINARY:
        return "binary", msg.data
    assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    return "text", json.loads(msg.data)


async def started(gw: RunningGateway, call_id: str) -> dict[str, Any]:
    def found() -> bool:
        return any(e["call_id"] == call_id for e in gw.captured.events_of("started"))

    await gw.captured.wait_for(found)
    return next(e for e in gw.captured.events_of("started") if e["call_id"] == call_id)


async def stopped(gw: RunningGateway, call_id: str) -> dict[str, Any]:
    def found() -> bool:
        return any(e["call_id"] == call_id for e in gw.captured.events_of("stopped"))

    await gw.captured.wait_for(found)
    return next(e for e in gw.captured.events_of("stopped") if e["call_id"] == call_id)


def audio_on(gw: RunningGateway, subject: str) -> list[Msg]:
    return [m for m in gw.captured.audio if m.subject == subject]


def events_of(gw: RunningGateway, call_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in gw.captured.events_of(kind) if e["call_id"] == call_id]


def assert_frames(msgs: list[Msg], payloads: list[bytes], codec: str, stream_id: str, frame_ms: int) -> None:
    assert [m.data for m in msgs] == payloads  # every frame once, in order, byte for byte
    for n, msg in enumerate(msgs):
        headers = msg.headers or {}
        assert headers["Sgw-Seq"] == str(n + 1)
        assert headers["Sgw-Ts"] == str(n * frame_ms)  # counted from the bytes received
        assert headers["Sgw-Codec"] == codec
        assert headers["Sgw-Stream-Id"] == stream_id


def vonage_connected(call_id: str, rate: int = 16000, **headers: Any) -> str:
    return json.dumps(
        {"event": "websocket:connected", "content-type": f"audio/l16;rate={rate}", "call_id": call_id, **headers}
    )


def jambonz_opening(call_sid: str, mix: str, rate: int, **fields: Any) -> str:
    return json.dumps(
        {"callSid": call_sid, "from": "+15550100", "to": "+15550199", "sampleRate": rate, "mixType": mix, **fields}
    )


# -- Vonage -------------------------------------------------------------------------------------


async def test_vonage_stream_every_frame_once(gateway: RunningGateway) -> None:
    frames = [os.urandom(640) for _ in range(25)]
    async with provider_socket(gateway.ws_url) as ws:
        await ws.send_str(vonage_connected("c-42", caller="447700900123", lang="en-GB"))
        for n, frame in enumerate(frames):
            await ws.send_bytes(frame)
            if n == 10:
                await ws.send_str('{"event":"websocket:dtmf","digit":"5","duration":260}')
    stop = await stopped(gateway, "c-42")
    start = await started(gateway, "c-42")
    assert start["provider"] == "vonage"
    assert (start["codec"], start["sample_rate"], start["tracks"]) == ("L16/16000", 16000, ["inbound"])
    assert start["custom_parameters"] == {"call_id": "c-42", "caller": "447700900123", "lang": "en-GB"}
    assert len(start["stream_id"]) == 36 and start["stream_id"] != "c-42"  # generated
    assert_frames(audio_on(gateway, "audio.c-42.inbound"), frames, "L16/16000", start["stream_id"], 20)
    assert audio_on(gateway, "audio.c-42.outbound") == []
    dtmf = events_of(gateway, "c-42", "dtmf")
    assert [(e["digit"], e["duration"]) for e in dtmf] == [("5", 260)]
    assert stop["reason"] == "closed"  # Vonage has no stop message
    assert stop["tracks"]["inbound"]["frames"] == 25 and stop["tracks"]["inbound"]["bytes"] == 25 * 640
    assert gateway.metric("sgw_streams_started_total", provider="vonage") == 1


async def test_vonage_8k_frames_are_20ms_each(gateway: RunningGateway) -> None:
    frames = [os.urandom(320) for _ in range(5)]
    async with provider_socket(gateway.ws_url) as ws:
        await ws.send_str(vonage_connected("c-8k", rate=8000))
        for frame in frames:
            await ws.send_bytes(frame)
    await stopped(gateway, "c-8k")
    start = await started(gateway, "c-8k")
    assert_frames(audio_on(gateway, "audio.c-8k.inbound"), frames, "L16/8000", start["stream_id"], 20)


@pytest.mark.parametrize(("query", "code"), [("?provider=vonage", 1008), ("", 1003)])
async def test_provider_query_forces_vonage(gateway: RunningGateway, query: str, code: int) -> None:
    """A binary frame first: the forced Vonage dialect says audio came before websocket:connected
    (1008); without it no dialect is chosen yet, and binary before any text is refused (1003)."""
    async with provider_socket(gateway.ws_url + query) as ws:
        await ws.send_bytes(b"\x00" * 640)
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == code


async def test_provider_query_forced_vonage_streams(gateway: RunningGateway) -> None:
    async with provider_socket(gateway.ws_url + "/forced-1?provider=vonage") as ws:
        await ws.send_str(vonage_connected("c-forced"))
        await ws.send_bytes(b"\x01\x00" * 320)
    start = await started(gateway, "c-forced")
    assert (start["provider"], start["control_id"]) == ("vonage", "forced-1")
    await stopped(gateway, "c-forced")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x00" * 639, 1007),  # not whole samples
        ('{"event":"websocket:connected","content-type":"audio/pcmu;rate=8000"}', 1003),
    ],
)
async def test_vonage_bad_input_closes_with_its_code(gateway: RunningGateway, frame: bytes | str, code: int) -> None:
    async with provider_socket(gateway.ws_url) as ws:
        if isinstance(frame, bytes):
            await ws.send_str(vonage_connected("c-bad"))
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
        msg = await ws.receive(timeout=10)
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == code


async def test_vonage_back_channel_round_trip(gateway: RunningGateway) -> None:
    audio = bytes(i % 251 for i in range(640 * 2 + 20))
    async with provider_socket(gateway.ws_url) as ws:
        await ws.send_str(vonage_connected("c-bot"))
        await ws.send_bytes(b"\x00" * 640)
        play = (await started(gateway, "c-bot"))["playback_subject"]
        await gateway.nc.publish(play, audio)
        await gateway.nc.publish(play, b'{"type":"mark","name":"reply-1"}')
        received = [await receive(ws) for _ in range(4)]
        assert received == [
            ("binary", audio[:640]),
            ("binary", audio[640:1280]),
            ("binary", audio[1280:] + bytes(620)),  # the remainder, padded with silence
            ("text", {"action": "notify", "payload": {"name": "reply-1"}}),  # after all the audio
        ]
        await ws.send_str(json.dumps({"event": "websocket:notify", "payload": received[3][1]["payload"]}))
        await gateway.captured.wait_for(lambda: bool(events_of(gateway, "c-bot", "mark")))
        assert [e["name"] for e in events_of(gateway, "c-bot", "mark")] == ["reply-1"]
        await gateway.nc.publish(play, b'{"type":"dtmf","digit":"1"}')  # Vonage has none: counted
        await gateway.nc.publish(play, b'{"type":"clear"}')
        assert await receive(ws) == ("text", {"action": "clear"})
        await ws.send_str('{"event":"websocket:cleared"}')
        await ws.send_bytes(b"\x00" * 640)
    stop = await stopped(gateway, "c-bot")
    assert stop["tracks"]["inbound"]["frames"] == 2
    assert events_of(gateway, "c-bot", "error") == []
    for reason, value in (("media", 1), ("mark", 1), ("clear", 1), ("unsupported", 1)):
        assert gateway.metric("sgw_playback_messages_total", reason=reason) == value


# -- jambonz ------------------------------------------------------------------------------------


@pytest.mark.parametrize("subprotocol", ["audio.jambonz.org", "audio.drachtio.org"])
async def test_jambonz_mono_stream_with_subprotocol(gateway: RunningGateway, subprotocol: str) -> None:
    call_sid = f"{CALL_SID}-{subprotocol[6:13]}"
    frames = [os.urandom(640) for _ in range(10)]  # 20 ms at 16 kHz
    async with provider_socket(gateway.ws_url, protocols=(subprotocol,)) as ws:
        assert ws.protocol == subprotocol  # echoed (aiohttp also checked Sec-WebSocket-Accept)
        await ws.send_str(jambonz_opening(call_sid, "mono", 16000, accountSid="acc-1", tenant="acme"))
        for n, frame in enumerate(frames):
            await ws.send_bytes(frame)
            if n == 3:
                await ws.send_str('{"event":"dtmf","dtmf":"7","duration":1600}')
    stop = await stopped(gateway, call_sid)
    start = await started(gateway, call_sid)
    assert start["provider"] == "jambonz"
    assert (start["codec"], start["tracks"], start["account_id"]) == ("L16/16000", ["inbound"], "acc-1")
    assert start["custom_parameters"] == {
        "from": "+15550100",
        "to": "+15550199",
        "accountSid": "acc-1",
        "tenant": "acme",
    }
    assert_frames(audio_on(gateway, f"audio.{call_sid}.inbound"), frames, "L16/16000", start["stream_id"], 20)
    assert [(e["digit"], e["duration"]) for e in events_of(gateway, call_sid, "dtmf")] == [("7", 200)]
    assert stop["reason"] == "closed"
    assert gateway.metric("sgw_streams_started_total", provider="jambonz") == 1


async def test_jambonz_stereo_is_split_into_two_tracks(gateway: RunningGateway) -> None:
    samples = 160  # 20 ms at 8 kHz
    left = [[(n * 1000 + i * 7) % 65536 - 32768 for i in range(samples)] for n in range(8)]
    right = [[(n * 3000 - i * 11) % 65536 - 32768 for i in range(samples)] for n in range(8)]
    async with provider_socket(gateway.ws_url, protocols=("audio.jambonz.org",)) as ws:
        await ws.send_str(jambonz_opening(CALL_SID, "stereo", 8000))
        for ch0, ch1 in zip(left, right, strict=True):
            interleaved = [v for pair in zip(ch0, ch1, strict=True) for v in pair]
            await ws.send_bytes(struct.pack(f"<{2 * samples}h", *interleaved))
    stop = await stopped(gateway, CALL_SID)
    start = await started(gateway, CALL_SID)
    assert start["tracks"] == ["inbound", "outbound"] and start["codec"] == "L16/8000"
    for track, channel in (("inbound", left), ("outbound", right)):
        expected = [struct.pack(f"<{samples}h", *values) for values in channel]
        assert_frames(audio_on(gateway, f"audio.{CALL_SID}.{track}"), expected, "L16/8000", start["stream_id"], 20)
        assert stop["tracks"][track]["frames"] == 8 and stop["tracks"][track]["bytes"] == 8 * 320


async def test_jambonz_back_channel_play_done_echoes_marks(gateway: RunningGateway) -> None:
    audio = os.urandom(3200)
    async with provider_socket(gateway.ws_url, protocols=("audio.jambonz.org",)) as ws:
        await ws.send_str(jambonz_opening(CALL_SID, "mono", 8000))
        await ws.send_bytes(b"\x00" * 320)
        play = (await started(gateway, CALL_SID))["playback_subject"]
        await gateway.nc.publish(play, audio)
        await gateway.nc.publish(play, b'{"type":"mark","name":"greeting-done"}')
        await gateway.nc.publish(play, b'{"type":"clear"}')
        kind, message = await receive(ws)
        assert (kind, message["type"], message["data"]["sampleRate"]) == ("text", "playAudio", "8000")
        assert message["data"]["audioContentType"] == "raw"
        assert base64.b64decode(message["data"]["audioContent"]) == audio
        assert await receive(ws) == ("text", {"type": "killAudio"})
        # killAudio flushed the mark: it is echoed with the next frame jambonz sends
        await ws.send_bytes(b"\x00" * 320)
        await gateway.captured.wait_for(lambda: bool(events_of(gateway, CALL_SID, "mark")))
        assert [e["name"] for e in events_of(gateway, CALL_SID, "mark")] == ["greeting-done"]
        await ws.send_str('{"type":"playDone","data":{"id":"1"}}')  # the killed play's own playDone
        await gateway.nc.publish(play, audio[:320])
        await gateway.nc.publish(play, b'{"type":"mark","name":"second"}')
        assert (await receive(ws))[1]["type"] == "playAudio"
        # the mark is remembered before its audio's playDone comes (five consumer messages handled)
        await eventually(lambda: gateway.metric("sgw_playback_messages_total") == 5, what="mark handled")
        await ws.send_str('{"type":"playDone"}')
        await gateway.captured.wait_for(lambda: len(events_of(gateway, CALL_SID, "mark")) == 2)
        assert [e["name"] for e in events_of(gateway, CALL_SID, "mark")] == ["greeting-done", "second"]
    await stopped(gateway, CALL_SID)
    assert events_of(gateway, CALL_SID, "error") == []


async def test_unknown_subprotocols_are_not_echoed(gateway: RunningGateway) -> None:
    async with provider_socket(gateway.ws_url, protocols=("chat.example.org",)) as ws:
        assert ws.protocol is None


@pytest.mark.parametrize(
    ("offered", "echoed"),
    [("audio.drachtio.org", "audio.drachtio.org"), ("x-other, audio.jambonz.org", "audio.jambonz.org")],
)
async def test_raw_101_carries_accept_and_the_subprotocol(gateway: RunningGateway, offered: str, echoed: str) -> None:
    """Byte-level check of the handshake picows builds from ``create_101_response(extra_headers)``."""
    url = urlsplit(gateway.ws_url)
    key = base64.b64encode(os.urandom(16)).decode()
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(
            (
                f"GET {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: {offered}\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)
    }
    assert status.startswith("HTTP/1.1 101 ")
    accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()  # noqa: S324 - RFC 6455
    assert headers["sec-websocket-accept"] == accept
    assert headers["upgrade"].lower() == "websocket" and headers["connection"].lower() == "upgrade"
    assert headers["sec-websocket-protocol"] == echoed  # the one we speak, only that one


# -- the recorded sessions, through the gateway ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "protocols"),
    [("vonage_l16_16k", ()), ("jambonz_stereo_8k", ("audio.jambonz.org",)), ("jambonz_mono_16k", ())],
)
async def test_recorded_sessions_through_the_gateway(
    gateway: RunningGateway, name: str, protocols: tuple[str, ...]
) -> None:
    """Each fixture replayed over a socket (its consumer messages published on the playback
    subject): the gateway publishes what the dialect decodes and sends what the fixture says."""
    frames = load(name)
    offline = replay(VonageDialect() if name.startswith("vonage") else JambonzDialect(), frames)
    sent: list[tuple[str, Any]] = []
    call_id = ""
    async with provider_socket(gateway.ws_url, protocols=protocols) as ws:
        for frame in frames:
            call_id = await _play(gateway, ws, frame, call_id, sent)
    assert sent == offline.expected
    await stopped(gateway, call_id)
    media: dict[str, list[bytes]] = defaultdict(list)
    for event in offline.events:
        if isinstance(event, Media):
            media[event.track].append(event.payload)
    for track, payloads in media.items():
        assert [m.data for m in audio_on(gateway, f"audio.{call_id}.{track}")] == payloads
    dtmf = [(e.digit, e.duration_ms) for e in offline.events if isinstance(e, Dtmf)]
    assert [(e["digit"], e.get("duration")) for e in events_of(gateway, call_id, "dtmf")] == dtmf
    marks = [e.name for e in offline.events if isinstance(e, Mark)]
    assert [e["name"] for e in events_of(gateway, call_id, "mark")] == marks


async def _play(
    gw: RunningGateway, ws: aiohttp.ClientWebSocketResponse, frame: Frame, call_id: str, sent: list[tuple[str, Any]]
) -> str:
    if frame.direction == "p2s" and frame.kind == "text":
        await ws.send_str(frame.text)
        if not call_id:
            message = frame.message
            call_id = message.get("callSid") or message.get("call_id") or ""
            if not call_id:  # Vonage without a call_id header: the stream id, from started
                await gw.captured.wait_for(lambda: bool(gw.captured.events_of("started")))
                call_id = gw.captured.events_of("started")[0]["call_id"]
    elif frame.direction == "p2s" and frame.kind == "binary":
        await ws.send_bytes(frame.data)
    elif frame.direction == "p2s":
        await ws.close(code=frame.code)
    elif frame.direction == "c2s":
        start = await started(gw, call_id)
        handled = gw.metric("sgw_playback_messages_total")
        await gw.nc.publish(start["playback_subject"], frame.payload)
        # Handled (sent, remembered or refused: each message is counted once) before the next frame.
        await eventually(lambda: gw.metric("sgw_playback_messages_total") == handled + 1, what="message handled")
    else:
        sent.append(await receive(ws))
    return call_id

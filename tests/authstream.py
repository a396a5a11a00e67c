"""A provider stream that presents credentials, for the auth tests (integration and security).

:func:`stream_with_credentials` opens ``GET /stream[/key][?query]`` with the given upgrade headers
(on a plain socket, so the request target goes out exactly as given), sends a short Twilio-format
call (connected, start, three media frames, stop) and reports how it ended: the HTTP status and
``WWW-Authenticate`` of a refused upgrade, or the close code and reason.
:func:`twilio_signature` and :func:`basic` build credentials the way the providers do, with the
standard library only (independent of the gateway's code).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.reliability.rawws import OP_CLOSE, OP_TEXT, encode_frame, read_http_head


def twilio_signature(url: str, auth_token: str) -> str:
    """``X-Twilio-Signature`` of a WebSocket upgrade: base64 HMAC-SHA1 of the URL (no parameters)."""
    return base64.b64encode(hmac.new(auth_token.encode(), url.encode(), hashlib.sha1).digest()).decode()


def basic(user: str, password: str) -> str:
    """``Authorization`` value of HTTP Basic credentials (what ``wss://user:password@host`` sends)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Outcome:
    status: int | None = None
    """HTTP status when the upgrade was refused."""
    challenge: str | None = None
    close_code: int | None = None
    close_reason: str = ""


async def stream_with_credentials(
    ws_url: str, call_id: str, headers: dict[str, str], *, key: str, in_path: bool, params: dict[str, str] | None = None
) -> Outcome:
    """One short stream; the route key in the path, or in ``customParameters.control_id``.

    The frames go out in one write, as a provider that streams at once would: a stream refused at
    ``start`` is closed by the server while the rest is already on its way, and writing after
    that close could reset the connection before its close frame is read (then 1006, not 1008).
    """
    url = f"{ws_url}/{key}" if in_path else ws_url
    custom = {**(params or {}), **({} if in_path else {"control_id": key})}
    start = {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "streamSid": f"MZ-{call_id}",
            "accountSid": "AC1",
            "callSid": call_id,
            "tracks": ["inbound"],
            "customParameters": custom,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    payload = base64.b64encode(b"\xff" * 160).decode()
    frames: list[dict[str, object]] = [{"event": "connected", "protocol": "Call", "version": "1.0.0"}, start]
    for n in range(3):
        media = {"track": "inbound", "chunk": str(n + 1), "timestamp": str(20 * n), "payload": payload}
        frames.append({"event": "media", "sequenceNumber": str(n + 2), "media": media})
    frames.append({"event": "stop", "sequenceNumber": "5", "stop": {"callSid": call_id}})

    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), 10)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {parts.hostname}:{parts.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(read_http_head(reader), 10)
        if head.status != 101:
            return Outcome(status=head.status, challenge=head.headers.get("www-authenticate"))
        writer.write(b"".join(encode_frame(OP_TEXT, json.dumps(frame).encode()) for frame in frames))
        await writer.drain()
        return await asyncio.wait_for(_closed(reader), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def _closed(reader: asyncio.StreamReader) -> Outcome:
    """Read the server's frames up to its close frame (end of stream without one: 1006)."""
    while True:
        try:
            b1, b2 = await reader.readexactly(2)
            length = b2 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await reader.readexactly(8))
            body = await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return Outcome(close_code=1006)
        if b1 & 0x0F == OP_CLOSE:
            code = struct.unpack("!H", body[:2])[0] if len(body) >= 2 else 1005
            return Outcome(close_code=code, close_reason=body[2:].decode(errors="replace"))

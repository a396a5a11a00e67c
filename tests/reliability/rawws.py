"""A deliberately low-level WebSocket client for hostile-input tests.

aiohttp's client refuses to send what a hostile peer would send (invalid UTF-8 in a text frame,
frames trickled one byte at a time, oversized headers, an upgrade that is never completed), so
this client writes RFC 6455 frames onto a plain TCP (or TLS) stream itself. It reads the server's
frames only as far as the tests need: data frames are returned, a close frame yields its code, and
end of stream without a close frame is reported as ``None`` (what libraries call 1006).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA


def encode_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """One frame as a client sends it (masked, as RFC 6455 requires of clients)."""
    head = bytearray([(0x80 if fin else 0) | opcode])
    mask_bit = 0x80 if masked else 0
    length = len(payload)
    if length < 126:
        head.append(mask_bit | length)
    elif length < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", length)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", length)
    if not masked:
        return bytes(head) + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if len(payload) < 4096 else _mask_fast(payload, key)
    return bytes(head) + key + body


def _mask_fast(payload: bytes, key: bytes) -> bytes:
    # Big frames: XOR as one integer instead of a per-byte Python loop.
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


@dataclass
class Handshake:
    status: int
    headers: dict[str, str]


class RawWebSocket:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handshake: Handshake) -> None:
        self.reader = reader
        self.writer = writer
        self.handshake = handshake
        self.close_reason = ""

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = 10.0,
    ) -> RawWebSocket:
        """Open the socket and send the upgrade; the caller checks ``handshake.status`` (101 or not)."""
        reader, writer = await open_stream(url, ssl_context, timeout)
        parts = urlsplit(url)
        lines = [
            f"GET {parts.path or '/'} HTTP/1.1",
            f"Host: {parts.hostname}:{parts.port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        handshake = await asyncio.wait_for(read_http_head(reader), timeout)
        return cls(reader, writer, handshake)

    async def send(self, opcode: int, payload: bytes, *, fin: bool = True) -> None:
        self.writer.write(encode_frame(opcode, payload, fin=fin))
        await self.writer.drain()

    async def send_text(self, text: str | bytes) -> None:
        await self.send(OP_TEXT, text.encode() if isinstance(text, str) else text)

    async def drip(self, data: bytes, interval: float) -> None:
        """Write ``data`` one byte at a time: a slowloris peer (the pacing is the test input)."""
        for i in range(len(data)):
            self.writer.write(data[i : i + 1])
            await self.writer.drain()
            await asyncio.sleep(interval)

    async def read_frame(self) -> tuple[int, bytes] | None:
        """The next frame from the server, or None at end of stream."""
        try:
            b1, b2 = await self.reader.readexactly(2)
            length = b2 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self.reader.readexactly(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
            payload = await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return b1 & 0x0F, payload

    async def close_code(self, timeout: float = 15.0) -> int | None:
        """Read until the server's close frame (its code) or the end of the stream (None)."""

        async def loop() -> int | None:
            while True:
                frame = await self.read_frame()
                if frame is None:
                    return None
                opcode, payload = frame
                if opcode == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    self.close_reason = payload[2:].decode(errors="replace")
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await self.send(OP_CLOSE, payload[:2])  # echo, as a well-behaved peer would
                    return int(code)

        return await asyncio.wait_for(loop(), timeout)

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


async def open_stream(
    url: str, ssl_context: ssl.SSLContext | None, timeout: float
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    tls = ssl_context if parts.scheme in ("wss", "https") else None
    assert parts.hostname is not None and parts.port is not None
    return await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port, ssl=tls), timeout)


async def read_http_head(reader: asyncio.StreamReader) -> Handshake:
    """Status code and headers of an HTTP response (the body, if any, is left unread)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        head = exc.partial
    lines = head.decode("latin-1").split("\r\n")
    if not lines or not lines[0].startswith("HTTP/"):
        return Handshake(status=0, headers={})
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Handshake(status=status, headers=headers)


async def http_request(url: str, raw: bytes, *, timeout: float = 10.0) -> Handshake:
    """Send arbitrary request bytes (e.g. oversized headers) and read the response head."""
    reader, writer = await open_stream(url, None, timeout)
    try:
        writer.write(raw)
        await writer.drain()
        return await asyncio.wait_for(read_http_head(reader), timeout)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

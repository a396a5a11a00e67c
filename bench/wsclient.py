"""A lean client WebSocket connection for the load generator: raw asyncio, no library.

It writes its own HTTP upgrade request, checks the ``101`` and ``Sec-WebSocket-Accept``, then
sends whatever pre-framed bytes it is given. From the server it only understands what it must:
ping (answered with a pong), close (answered, and the code kept) and end of stream. Flow control
is the transport's: :attr:`WsClient.paused` follows ``pause_writing``/``resume_writing`` and
:attr:`WsClient.on_resume` lets a sender continue when the buffer has drained.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

from bench.wire import close_frame, pong_frame, ws_accept

_HANDSHAKE_LIMIT = 16384


class HandshakeError(Exception):
    """The server did not accept the WebSocket upgrade."""


class WsClient(asyncio.Protocol):
    """One client connection; create it with :func:`connect`."""

    def __init__(self, host: str, path: str) -> None:
        loop = asyncio.get_running_loop()
        self._key = base64.b64encode(os.urandom(16))
        self._request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self._key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.upgraded: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.on_resume: Callable[[], None] | None = None
        self.server_close_code: int | None = None
        """The code of the server's close frame, if it sent one."""
        self.close_sent = False
        self._buf = bytearray()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self.upgraded.done():
            self._read_handshake()
        if self.upgraded.done() and self._buf:
            self._read_frames()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.on_resume is not None:
            self.on_resume()

    def connection_lost(self, exc: Exception | None) -> None:
        self.paused = True
        if not self.upgraded.done():
            self.upgraded.set_exception(HandshakeError(f"connection lost during the upgrade: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)
        if self.on_resume is not None:
            self.on_resume()

    # API

    @property
    def open(self) -> bool:
        return not self.closed.done() and self.server_close_code is None

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def send_close(self, prefix: bytes = b"") -> None:
        """``prefix`` (e.g. a ``stop`` message) and a close frame with code 1000, once."""
        if self.close_sent or self.closed.done() or self.transport is None:
            return
        self.close_sent = True
        self.transport.write(prefix + close_frame())

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # parsing

    def _read_handshake(self) -> None:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > _HANDSHAKE_LIMIT:
                self._fail("oversized upgrade response")
            return
        head = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        lines = head.split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            self._fail(f"upgrade refused: {lines[0]!r}")
            return
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        if headers.get("sec-websocket-accept", "").encode() != ws_accept(self._key):
            self._fail("wrong Sec-WebSocket-Accept")
            return
        self.upgraded.set_result(None)

    def _fail(self, why: str) -> None:
        self.upgraded.set_exception(HandshakeError(why))
        assert self.transport is not None
        self.transport.close()

    def _read_frames(self) -> None:
        buf = self._buf
        while len(buf) >= 2:
            opcode, n, hdr = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, hdr = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, hdr = int.from_bytes(buf[2:10], "big"), 10
            mask = b""
            if buf[1] & 0x80:
                mask, hdr = bytes(buf[hdr : hdr + 4]), hdr + 4
            if len(buf) < hdr + n:
                return
            body = bytes(buf[hdr : hdr + n])
            del buf[: hdr + n]
            if mask:
                body = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
            if opcode == 0x9:
                self.write(pong_frame(body))
            elif opcode == 0x8:
                self.server_close_code = int.from_bytes(body[:2], "big") if len(body) >= 2 else 1005
                self.send_close()
                if self.on_resume is not None:
                    self.on_resume()


async def connect(url: str, *, sndbuf: int = 0, timeout: float = 30.0) -> WsClient:
    """An upgraded connection to ``ws://host:port/path``; ``sndbuf`` > 0 fixes the socket's send
    buffer (bounding what is in flight on top of the transport's own limits)."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or parts.hostname is None or parts.port is None:
        raise ValueError(f"need ws://host:port/path, got {url!r}")
    path = parts.path or "/"
    host = f"{parts.hostname}:{parts.port}"
    loop = asyncio.get_running_loop()
    family, kind, proto, _, address = (await loop.getaddrinfo(parts.hostname, parts.port, type=socket.SOCK_STREAM))[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if sndbuf > 0:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        await asyncio.wait_for(loop.sock_connect(sock, address), timeout)
        _, client = await loop.create_connection(lambda: WsClient(host, path), sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        await asyncio.wait_for(client.upgraded, timeout)
    except BaseException:
        client.abort()
        raise
    return client

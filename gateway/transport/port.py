"""The public port: one listener, two protocols, chosen by the request line of each connection.

Provider WebSockets (``GET /stream`` and ``GET /stream/...``) go to picows, which parses frames in
Cython and calls the stream's listener straight from its read buffer: no future, queue or
coroutine per message, which is what aiohttp's ``receive()`` costs (``bench/RESULTS.md`` has the
figures for both). picows serves only GET upgrades, though, and the same port must take status
callbacks (``POST /status``), so every other request goes to the aiohttp application.

The first bytes decide: this protocol buffers them until the request line is complete, then hands
the transport over (``set_protocol``, ``connection_made``, the buffered bytes) and is done. TLS is
terminated by the event loop's transport underneath, so both protocols see plain bytes.

The picows side is built with ``picows.api.WSProtocol`` exactly as ``picows.ws_create_server``
builds it (picows 2.3, pinned <2.4): the constructor is not documented, but it is what the public
server uses, and :func:`websocket_protocol_factory` is the one place that knows its arguments.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

import picows.api
from picows.api import WSServerListenerFactory

logger = logging.getLogger(__name__)

_STREAM_PREFIX: Final = b"GET /stream"
_MAX_REQUEST_LINE: Final = 8190
"""aiohttp's own limit for a request line (and a header line); the upgrades get the same limits."""
_MAX_HEADERS: Final = 128
_MAX_HEAD: Final = 16 * 1024 - 1
"""picows closes (without a response) on a request head of 16 KiB; we answer before it does."""

ProtocolFactory = Callable[[], asyncio.BaseProtocol]


def websocket_protocol_factory(
    listeners: WSServerListenerFactory,
    *,
    max_frame_size: int,
    handshake_timeout: float = 5.0,
) -> ProtocolFactory:
    """picows' server protocol, configured as ``ws_create_server`` would configure it."""
    log = PeerFaultsAtDebug(logging.getLogger("picows.server"))
    # Not in picows' type stubs: it is the class ``ws_create_server`` instantiates.
    ws_protocol: Callable[..., asyncio.BaseProtocol] = picows.api.WSProtocol  # type: ignore[attr-defined]

    def make() -> asyncio.BaseProtocol:
        return ws_protocol(
            None,  # host and port: client side only
            None,  # path: client side only
            False,  # is_client_side
            listeners,
            log,
            True,  # disconnect_on_exception
            handshake_timeout,
            # No auto ping: it is a task per connection; the stream's watchdog pings instead.
            False,  # enable_auto_ping
            20.0,  # auto_ping_idle_timeout (unused)
            20.0,  # auto_ping_reply_timeout (unused)
            1,  # WSAutoPingStrategy.PING_WHEN_IDLE
            True,  # enable_auto_pong
            max_frame_size,
            None,  # extra_headers: client side only
            2048,  # read_buffer_init_size: picows' minimum; it grows for larger frames (RSS per idle stream)
        )

    return make


class PeerFaultsAtDebug(logging.LoggerAdapter):  # type: ignore[type-arg]
    """picows logs every accepted connection at INFO and every frame a peer gets wrong (a bad
    opcode, an oversized frame) at ERROR. Nothing on our side failed: the gateway counts and
    reports those itself, and a peer must not be able to fill the log or trip error alerts at
    will. So both become DEBUG; warnings and above about anything else stay as they are."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level == logging.INFO or (level == logging.ERROR and "WS parser error" in str(msg)):
            level = logging.DEBUG
        super().log(level, msg, *args, **kwargs)


def _is_stream_upgrade(line: bytes) -> bool:
    if not line.startswith(_STREAM_PREFIX):
        return False
    rest = line[len(_STREAM_PREFIX) : len(_STREAM_PREFIX) + 1]
    return rest in (b" ", b"/", b"?")


class PublicPortProtocol(asyncio.Protocol):
    """Lives for the first bytes of one connection, then hands it to the right protocol."""

    __slots__ = ("_buffer", "_http", "_transport", "_websocket")

    def __init__(self, websocket: ProtocolFactory, http: ProtocolFactory) -> None:
        self._websocket = websocket
        self._http = http
        self._buffer = bytearray()
        self._transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Duck-typed: uvloop's transports do what asyncio.Transport does without subclassing it.
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n")
        if end < 0 and len(self._buffer) <= _MAX_REQUEST_LINE:
            return  # the request line is not complete yet
        line = bytes(self._buffer[: end if end >= 0 else len(self._buffer)])
        transport = self._transport
        assert transport is not None
        if _is_stream_upgrade(line):
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0 and len(self._buffer) <= _MAX_HEAD:
                return  # wait for the whole head: its limits are checked before picows sees it
            refusal = _head_refusal(bytes(self._buffer[: head_end if head_end >= 0 else len(self._buffer)]))
            if refusal is not None:
                transport.write(refusal)
                transport.close()
                return
            target = self._websocket()
        else:
            target = self._http()
        transport.set_protocol(target)
        target.connection_made(transport)
        feed(target, bytes(self._buffer))
        self._buffer = bytearray()
        self._transport = None

    def eof_received(self) -> bool:
        return False  # close: a peer that stops before its request line has nothing more to say

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None


def _head_refusal(head: bytes) -> bytes | None:
    """The response for an upgrade request whose head breaks the limits aiohttp applies, or None."""
    lines = head.split(b"\r\n")
    if len(lines[0]) > _MAX_REQUEST_LINE:
        status = b"414 URI Too Long"
    elif len(head) > _MAX_HEAD or len(lines) - 1 > _MAX_HEADERS or any(len(h) > _MAX_REQUEST_LINE for h in lines):
        status = b"431 Request Header Fields Too Large"
    else:
        return None
    return b"HTTP/1.1 %b\r\nContent-Length: 0\r\nConnection: close\r\n\r\n" % status


def feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Deliver bytes that were read before ``protocol`` took over the connection."""
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(data)
        while view:
            buffer: Any = protocol.get_buffer(len(view))
            n = min(len(buffer), len(view))
            buffer[:n] = view[:n]
            protocol.buffer_updated(n)
            view = view[n:]
    elif isinstance(protocol, asyncio.Protocol):
        protocol.data_received(data)
    else:  # pragma: no cover - every protocol we hand over is one of the two
        raise TypeError(f"cannot feed {type(protocol).__name__}")

"""The public port's dispatcher: which protocol gets a connection, and what it refuses itself."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.transport.port import PublicPortProtocol, _head_refusal, feed


class _Transport:
    def __init__(self) -> None:
        self.protocol: Any = None
        self.written = b""
        self.closed = False

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


class _Recorder(asyncio.Protocol):
    def __init__(self, name: str) -> None:
        self.name = name
        self.data = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data


class _Buffered(asyncio.BufferedProtocol):
    def __init__(self) -> None:
        self.buffer = bytearray(4)
        self.data = b""

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data += bytes(self.buffer[:nbytes])


def route(*chunks: bytes) -> tuple[_Transport, dict[str, _Recorder]]:
    made: dict[str, _Recorder] = {}

    def factory(name: str) -> Any:
        def make() -> _Recorder:
            made[name] = _Recorder(name)
            return made[name]

        return make

    transport = _Transport()
    port = PublicPortProtocol(factory("ws"), factory("http"))
    port.connection_made(transport)  # type: ignore[arg-type]
    for chunk in chunks:
        port.data_received(chunk)
    return transport, made


def test_stream_upgrades_go_to_the_websocket_side_whole_head_first() -> None:
    head = b"GET /stream/abc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
    transport, made = route(head[:10], head[10:30], head[30:])
    assert set(made) == {"ws"} and made["ws"].data == head and transport.protocol is made["ws"]
    assert made["ws"].transport is transport


def test_everything_else_goes_to_http_at_the_end_of_the_request_line() -> None:
    for line in (b"POST /status HTTP/1.1", b"GET /status HTTP/1.1", b"GET /streams HTTP/1.1", b"GET / HTTP/1.1"):
        _, made = route(line + b"\r\nHost: x\r\n")
        assert set(made) == {"http"}, line


def test_oversized_upgrade_heads_are_refused_with_the_http_limits() -> None:
    assert _head_refusal(b"GET /stream/" + b"p" * 9000 + b" HTTP/1.1") is not None
    assert b"414" in (_head_refusal(b"GET /stream/" + b"p" * 9000 + b" HTTP/1.1") or b"")
    assert b"431" in (_head_refusal(b"GET /stream HTTP/1.1\r\nX: " + b"a" * 9000) or b"")
    many = b"GET /stream HTTP/1.1\r\n" + b"\r\n".join(b"X-%d: v" % i for i in range(200))
    assert b"431" in (_head_refusal(many) or b"")
    assert _head_refusal(b"GET /stream HTTP/1.1\r\nHost: x") is None
    transport, made = route(b"GET /stream HTTP/1.1\r\nX: " + b"a" * 17000)
    assert made == {} and transport.closed and b"431" in transport.written


def test_buffered_protocols_get_the_early_bytes_through_their_buffer() -> None:
    protocol = _Buffered()
    feed(protocol, b"0123456789")
    assert protocol.data == b"0123456789"

"""The second reference: the leanest bridge Python can be, with none of the gateway's features.

What a performance-minded engineer writes when only speed matters: picows hands each frame to
the listener from its read buffer, msgspec decodes the Twilio/SignalWire message (base64 straight
to bytes), the header block is built once per stream and track, so only ``Sgw-Seq`` and ``Sgw-Ts``
are formatted per frame, and a small NATS writer of its own (CONNECT, PING/PONG, HPUB) sends each
millisecond's messages with one write. It publishes what the gateway publishes on its default
route (``audio.{callSid}.{track}`` with the same five headers), and pauses reading every socket
while more than 8 MiB wait for NATS, so nothing is lost at maximum rate.

It has none of what the gateway adds per frame: no route, no session state machine, no gap or
duplicate counting, no delivery confirmation or resend, no outage buffer, no metrics, no latency
sampling, no provider detection, no watchdog. The difference between the two in the same run is
what those features cost; this bridge's own figure is the floor of this design on this machine.
Usage: ``python -m bench.lean_bridge --port P --nats-url nats://127.0.0.1:N``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import Any
from urllib.parse import urlsplit

import msgspec
import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from bench import bridge_cli
from gateway.settings import NatsSettings

_HIGH_WATER = 8 * 1024 * 1024
_TEXT = WSMsgType.TEXT


class _MediaBody(msgspec.Struct):
    payload: bytes
    track: str = "inbound"
    timestamp: int = 0


class _StartBody(msgspec.Struct):
    callSid: str  # noqa: N815 - wire name
    streamSid: str = ""  # noqa: N815


class _Media(msgspec.Struct, tag_field="event", tag="media"):
    media: _MediaBody


class _Start(msgspec.Struct, tag_field="event", tag="start"):
    start: _StartBody


class _Other(msgspec.Struct, tag_field="event", tag="connected"):
    pass


class _Stop(msgspec.Struct, tag_field="event", tag="stop"):
    pass


_DECODE = msgspec.json.Decoder(_Media | _Start | _Other | _Stop, strict=False).decode


class NatsWriter(asyncio.Protocol):
    """CONNECT, answer the server's PINGs, and HPUB batches flushed ``interval`` after their first message."""

    def __init__(self, interval: float) -> None:
        self.batch: list[bytes] = []
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.paused = False
        self.listeners: set[Bridge] = set()
        self._interval = interval
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        transport.set_write_buffer_limits(high=_HIGH_WATER)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while b"\r\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\r\n", 1)
            if line.startswith(b"INFO"):
                assert self._transport is not None
                self._transport.write(b'CONNECT {"verbose":false,"pedantic":false,"headers":true}\r\nPING\r\n')
            elif line == b"PING":
                self.write(b"PONG\r\n")
            elif line == b"PONG" and not self.ready.done():
                self.ready.set_result(None)
            elif line.startswith(b"-ERR"):
                raise SystemExit(f"nats-server: {line.decode()}")

    def connection_lost(self, exc: Exception | None) -> None:
        raise SystemExit(f"lost the NATS connection: {exc}")

    def write(self, msg: bytes) -> None:
        self.batch.append(msg)
        if len(self.batch) == 1:
            self._loop.call_later(self._interval, self._flush)

    def _flush(self) -> None:
        batch, self.batch = self.batch, []
        assert self._transport is not None
        self._transport.write(b"".join(batch))

    def pause_writing(self) -> None:
        self.paused = True
        for listener in self.listeners:
            listener.pause(True)

    def resume_writing(self) -> None:
        self.paused = False
        for listener in self.listeners:
            listener.pause(False)


class Bridge(WSListener):
    """One provider socket: ``start`` builds the two tracks' header blocks, media frames are sent."""

    def __init__(self, nats: NatsWriter) -> None:
        super().__init__()
        self.nats = nats
        self.transport: WSTransport | None = None
        self.heads: tuple[bytes, bytes] = (b"", b"")
        self.prefix = b""
        """The header block up to ``Sgw-Seq: `` (the same for both tracks)."""
        self.seq = [0, 0]

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.nats.listeners.add(self)
        if self.nats.paused:
            self.pause(True)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.nats.listeners.discard(self)

    def pause(self, paused: bool) -> None:
        if self.transport is not None:
            under = self.transport.underlying_transport
            if paused:
                under.pause_reading()
            else:
                under.resume_reading()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is not _TEXT:
            if frame.msg_type is WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            return
        msg = _DECODE(frame.get_payload_as_utf8_text())
        if type(msg) is _Media:
            media = msg.media
            track = 0 if media.track.startswith("in") else 1
            seq = self.seq[track] = self.seq[track] + 1
            tail = b"%d\r\nSgw-Ts: %d\r\n\r\n" % (seq, media.timestamp)
            payload, head, prefix = media.payload, self.heads[track], self.prefix
            size = len(prefix) + len(tail)
            self.nats.write(b"%b%d %d\r\n%b%b%b\r\n" % (head, size, size + len(payload), prefix, tail, payload))
        elif type(msg) is _Start:
            sid, stream = msg.start.callSid, msg.start.streamSid
            parent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
            block = f"NATS/1.0\r\nSgw-Codec: PCMU/8000\r\nSgw-Stream-Id: {stream}\r\ntraceparent: {parent}\r\n"
            self.heads = (f"HPUB audio.{sid}.inbound ".encode(), f"HPUB audio.{sid}.outbound ".encode())
            self.prefix = (block + "Sgw-Seq: ").encode()
        elif type(msg) is _Stop:
            transport.send_close()
            transport.disconnect()


async def serve(host: str, port: int, nats_url: str, interval: float) -> None:
    loop = asyncio.get_running_loop()
    url = urlsplit(nats_url)
    _, nats = await loop.create_connection(lambda: NatsWriter(interval), url.hostname or "127.0.0.1", url.port or 4222)
    await nats.ready

    def factory(request: WSUpgradeRequest) -> Bridge | None:
        return Bridge(nats) if request.path.startswith(b"/stream") else None

    # The gateway's read buffer size (picows' minimum): the same memory touched per stream.
    server = await ws_create_server(factory, host, port, read_buffer_init_size=2048)
    print(f"lean bridge listening on ws://{host}:{port}/stream", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = bridge_cli.parser("bench.lean_bridge", __doc__)
    parser.add_argument(
        "--flush-interval",
        type=float,
        default=NatsSettings().flush_interval,
        help="seconds a batch waits before its write (default: the gateway's default)",
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.port, args.nats_url, args.flush_interval))


if __name__ == "__main__":
    main()

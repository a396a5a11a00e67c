"""A loopback TCP proxy that can cut one direction of the connections it carries, or slow it.

Stopping the broker is a clean outage: the server flushes, confirms and closes. A network fault is
messier: the client's messages still arrive while nothing comes back, so the client cannot know
what was received. ``partition()`` reproduces that on every live connection (server-to-client
bytes are dropped); connections made afterwards are healthy, as after a route flap.

``swallow()`` plays a server that dies between confirming and delivering: nats-server answers a
PING as soon as it has parsed it, while the messages read with it still wait in its subscribers'
buffers. On every live connection the proxy then answers each PING with a PONG itself and passes
nothing on; ``sever()`` closes those connections, as the server's death would.

``rate`` (bytes per second, client to server) plays a saturated server: it takes what it is sent
only that fast, with small socket buffers so the backlog shows up in the sender quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field


class _Commands:
    """Follows the client's protocol stream to find its PINGs (an audio payload may hold the bytes
    ``PING``): command lines, and the payloads of PUB and HPUB skipped by their declared size."""

    def __init__(self) -> None:
        self._buffer = b""
        self._skip = 0

    def pings(self, data: bytes) -> int:
        buffer, at, found = self._buffer + data, 0, 0
        while True:
            if self._skip:
                taken = min(self._skip, len(buffer) - at)
                at, self._skip = at + taken, self._skip - taken
                if self._skip:
                    break
            end = buffer.find(b"\r\n", at)
            if end < 0:
                break
            line, at = buffer[at:end], end + 2
            if line.startswith((b"PUB ", b"HPUB ")):
                self._skip = int(line.split()[-1]) + 2
            elif line == b"PING":
                found += 1
        self._buffer = buffer[at:]
        return found


@dataclass
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    drop_downstream: bool = False
    swallow: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    commands: _Commands = field(default_factory=_Commands)


class OneWayPartitionProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, rate: float = 0.0) -> None:
        self._target = (upstream_host, upstream_port)
        self.rate = rate
        self._server: asyncio.Server | None = None
        self._links: list[_Link] = []
        self.port = 0
        self.connections = 0
        self.forged_pongs = 0
        """PONGs the proxy answered itself while swallowing (confirmations of undelivered messages)."""

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self.rate:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # accepted sockets inherit it
        sock.bind(("127.0.0.1", 0))
        self._server = await asyncio.start_server(self._accept, sock=sock)
        self.port = self._server.sockets[0].getsockname()[1]

    def partition(self) -> None:
        for link in self._links:
            link.drop_downstream = True

    def swallow(self) -> None:
        for link in self._links:
            link.swallow = True

    def sever(self) -> None:
        """Close every connection made so far, both sides (later ones are healthy)."""
        for link in self._links:
            for writer in (link.client, link.upstream):
                writer.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        link = _Link(writer, up_writer)
        self._links.append(link)
        self.connections += 1
        link.tasks = [
            asyncio.create_task(self._pump(reader, up_writer, link, downstream=False)),
            asyncio.create_task(self._pump(up_reader, writer, link, downstream=True)),
        ]

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, link: _Link, *, downstream: bool
    ) -> None:
        chunk = 4096 if self.rate and not downstream else 65536
        try:
            while data := await source.read(chunk):
                if downstream and link.drop_downstream:
                    continue
                if not downstream:
                    pings = link.commands.pings(data)  # followed throughout, to know where commands start
                    if link.swallow:
                        if pings:
                            link.client.write(b"PONG\r\n" * pings)
                            self.forged_pongs += pings
                        continue
                sink.write(data)
                await sink.drain()
                if self.rate and not downstream:
                    await asyncio.sleep(len(data) / self.rate)  # the pacing is the test's input
        except ConnectionError:
            pass
        finally:
            # Either side gone: close both, as a real path would once the client gives up.
            for w in (link.client, link.upstream):
                w.close()

    async def __aenter__(self) -> OneWayPartitionProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for link in self._links:
            for task in link.tasks:
                task.cancel()
            for task in link.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

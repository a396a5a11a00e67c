"""A loopback TCP proxy that delays what the server sends back by a fixed time (order kept).

Plays a distant broker for acknowledgement tests: the client's messages reach the server at once,
and everything coming back (JetStream acknowledgements, PONGs, INFO) arrives ``delay`` seconds
after the server sent it, as across a slow link. The delay is the test's input and can change
while connections are open.
"""

from __future__ import annotations

import asyncio
import contextlib


class DelayedReplyProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, delay: float) -> None:
        self._target = (upstream_host, upstream_port)
        self.delay = delay
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._writers: list[asyncio.StreamWriter] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, up_writer]
        backlog: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self._tasks += [
            asyncio.create_task(self._forward(reader, up_writer)),
            asyncio.create_task(self._stamp(up_reader, backlog)),
            asyncio.create_task(self._release(backlog, writer)),
        ]

    @staticmethod
    async def _forward(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.close()

    async def _stamp(self, source: asyncio.StreamReader, backlog: asyncio.Queue[tuple[float, bytes]]) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                backlog.put_nowait((loop.time() + self.delay, data))
        backlog.put_nowait((loop.time() + self.delay, b""))

    @staticmethod
    async def _release(backlog: asyncio.Queue[tuple[float, bytes]], sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ConnectionError):
            while True:
                due, data = await backlog.get()
                await asyncio.sleep(max(0.0, due - loop.time()))  # the delay is the test's input
                if not data:
                    break
                sink.write(data)
                await sink.drain()
        sink.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

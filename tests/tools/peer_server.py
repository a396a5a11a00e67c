"""A small recording WebSocket server: the peer the simulator talks to in these tests.

It is a legitimate provider-facing endpoint, not a mock of the gateway: it accepts
``/stream`` and ``/stream/{control_id}``, optionally demands a bearer token, records every frame
(text and binary), the upgrade's headers and subprotocol, and whether a close frame arrived, and
can close early, send frames back at once, or answer each frame (``respond``) on request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web


@dataclass
class PeerSession:
    path: str
    control_id: str | None
    authorization: str | None
    headers: dict[str, str] = field(default_factory=dict)
    subprotocol: str | None = None
    texts: list[str] = field(default_factory=list)
    binaries: list[bytes] = field(default_factory=list)
    frames: list[str | bytes] = field(default_factory=list)
    """Every data frame in arrival order."""
    close_frame: bool = False
    close_code: int | None = None
    ended_by: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(text) for text in self.texts]

    def media(self, track: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["event"] == "media" and (track is None or m["media"]["track"] == track)]


@dataclass
class PeerServer:
    url: str
    sessions: list[PeerSession]
    close_after_media: int | None = None
    close_code: int = 1000
    close_message: bytes = b""
    send_back: tuple[str, ...] = ()
    respond: Callable[[PeerSession, str | bytes], Sequence[str | bytes]] | None = None
    """Called with each data frame; what it returns is sent back at once."""
    protocols: tuple[str, ...] = ()
    token: str | None = None
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_done(self, count: int, timeout: float = 10.0) -> list[PeerSession]:
        async def _all() -> None:
            while len(self.sessions) < count:
                self.connected.clear()
                await self.connected.wait()
            for session in self.sessions:
                await session.done.wait()

        await asyncio.wait_for(_all(), timeout)
        return self.sessions


PEER = web.AppKey("peer", PeerServer)


async def _handler(request: web.Request) -> web.StreamResponse:
    server = request.app[PEER]
    auth = request.headers.get("Authorization")
    if server.token is not None and auth != f"Bearer {server.token}":
        raise web.HTTPUnauthorized(text="bad token")
    session = PeerSession(request.path, request.match_info.get("control_id"), auth, dict(request.headers))
    server.sessions.append(session)
    server.connected.set()
    ws = web.WebSocketResponse(protocols=server.protocols)
    await ws.prepare(request)
    session.subprotocol = ws.ws_protocol
    try:
        for text in server.send_back:
            await ws.send_str(text)
        media = 0
        while True:
            msg = await ws.receive()
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                session.frames.append(msg.data)
                if msg.type is WSMsgType.BINARY:
                    session.binaries.append(msg.data)
                else:
                    session.texts.append(msg.data)
                    media += '"event":"media"' in msg.data
                for answer in server.respond(session, msg.data) if server.respond is not None else ():
                    await (ws.send_bytes(answer) if isinstance(answer, bytes) else ws.send_str(answer))
                if server.close_after_media is not None and media >= server.close_after_media:
                    session.ended_by = "server"
                    await ws.close(code=server.close_code, message=server.close_message)
                    break
            elif msg.type is WSMsgType.CLOSE:
                session.close_frame = True
                session.close_code = msg.data
                session.ended_by = "client-close"
                break
            else:
                session.ended_by = msg.type.name
                break
    finally:
        session.done.set()
    return ws


@asynccontextmanager
async def peer_server(**options: Any) -> AsyncIterator[PeerServer]:
    server = PeerServer(url="", sessions=[], **options)
    app = web.Application()
    app[PEER] = server
    app.router.add_get("/stream", _handler)
    app.router.add_get("/stream/{control_id}", _handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"ws://{host}:{port}/stream"
    try:
        yield server
    finally:
        await runner.cleanup()

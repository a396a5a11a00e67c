"""The reference: the WebSocket-to-NATS bridge a user would write in an afternoon.

aiohttp server on ``/stream``, ``json.loads`` and ``base64.b64decode`` per message, the callSid
remembered from ``start``, one nats-py ``publish`` per media frame to ``audio.{callSid}.{track}``
(no headers, no buffering, no auth, no metrics). Usage:
``python -m bench.naive_bridge --port P --nats-url nats://127.0.0.1:N`` (prints a line when
listening). The benchmark measures the gateway against it under the same load.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json

import nats
from aiohttp import WSMsgType, web
from nats.aio.client import Client

from bench import bridge_cli


def make_app(nc: Client) -> web.Application:
    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        call_sid = None
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data["event"] == "start":
                call_sid = data["start"]["callSid"]
            elif data["event"] == "media" and call_sid is not None:
                media = data["media"]
                await nc.publish(f"audio.{call_sid}.{media['track']}", base64.b64decode(media["payload"]))
            elif data["event"] == "stop":
                break
        return ws

    app = web.Application()
    app.router.add_get("/stream", stream)
    return app


async def serve(host: str, port: int, nats_url: str) -> None:
    nc = await nats.connect(nats_url)
    runner = web.AppRunner(make_app(nc))
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        print(f"naive bridge listening on ws://{host}:{port}/stream", flush=True)
        await asyncio.Event().wait()  # until the process is stopped
    finally:
        await runner.cleanup()
        await nc.drain()


def main() -> None:
    args = bridge_cli.parser("bench.naive_bridge", __doc__).parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, args.nats_url))


if __name__ == "__main__":
    main()

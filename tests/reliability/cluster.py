"""A NATS cluster on loopback for failover tests: three ``nats-server`` processes with routes.

The first server is the seed: it listens for routes on a port it picks itself, and the others
route to it (they learn about each other from it, as in NATS's own seed-server setup). Readiness
is proven by traffic, not time: a message published on one server must reach a subscriber on
every other server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import nats

from gateway.embedded_nats import EmbeddedNats

_NAME = "sgw-test"


class NatsCluster:
    def __init__(self, size: int = 3) -> None:
        self.size = size
        self.servers: list[EmbeddedNats] = []

    @property
    def urls(self) -> str:
        """All client URLs, comma-separated (the gateway's ``nats.url``)."""
        return ",".join(s.url for s in self.servers)

    def __iter__(self) -> Iterator[EmbeddedNats]:
        return iter(self.servers)

    def by_port(self, port: int) -> EmbeddedNats:
        return next(s for s in self.servers if s.port == port)

    async def start(self) -> None:
        seed = EmbeddedNats(jetstream=False, extra_args=("--cluster_name", _NAME, "--cluster", "nats://127.0.0.1:-1"))
        await seed.start()
        self.servers.append(seed)
        route = f"nats://127.0.0.1:{seed.cluster_port}"
        for _ in range(self.size - 1):
            member = EmbeddedNats(
                jetstream=False,
                extra_args=("--cluster_name", _NAME, "--cluster", "nats://127.0.0.1:-1", "--routes", route),
            )
            await member.start()
            self.servers.append(member)
        await asyncio.wait_for(self._meshed(), 30)

    async def _meshed(self) -> None:
        """Every server forwards to every other one (interest has propagated over the routes)."""
        clients = [await nats.connect(s.url, allow_reconnect=False) for s in self.servers]
        try:
            for i, sender in enumerate(clients):
                subs = [await c.subscribe(f"mesh.{i}") for j, c in enumerate(clients) if j != i]
                for c in clients:
                    await c.flush()
                while True:  # bounded by the caller's wait_for: routes come up within moments
                    await sender.publish(f"mesh.{i}", b"ping")
                    await sender.flush()
                    got = []
                    for sub in subs:
                        with contextlib.suppress(nats.errors.TimeoutError):
                            got.append(await sub.next_msg(timeout=0.2))
                    if len(got) == len(subs):
                        break
                for sub in subs:
                    await sub.unsubscribe()
        finally:
            for c in clients:
                await c.close()

    async def close(self) -> None:
        for server in self.servers:
            await server.close()

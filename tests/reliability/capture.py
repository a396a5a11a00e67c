"""Ground truth for outage tests: a JetStream stream on the broker itself that records every
message the broker accepted on ``audio.>`` and ``events.>``.

A live subscriber is a poor witness across a broker restart: after the restart the gateway and
the subscriber race to reconnect, and whatever the gateway re-sends before the subscriber has
re-subscribed is lost to the subscriber, not to the system. A file-backed stream in the broker's
store directory survives the restart (``EmbeddedNats.restart`` keeps the store) and captures
what the broker accepted, independent of any client's connection state, with one exception the
outage tests allow for: a message accepted in the broker's last instant may not be stored.
"""

from __future__ import annotations

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from tests.reliability.harness import Capture

STREAM = "SGW_CAPTURE"


async def create_capture_stream(url: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(
            StreamConfig(name=STREAM, subjects=["audio.>", "events.>"], storage=StorageType.FILE)
        )
    finally:
        await nc.close()


async def stored_messages(url: str) -> int:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(STREAM)
        return int(info.state.messages)
    finally:
        await nc.close()


async def read_capture(url: str) -> Capture:
    """Every stored message, in the order the broker accepted them."""
    nc = await nats.connect(url)
    out = Capture()
    try:
        js = nc.jetstream()
        total = int((await js.stream_info(STREAM)).state.messages)
        await js.add_consumer(
            STREAM,
            ConsumerConfig(durable_name="reader", ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL),
        )
        sub = await js.pull_subscribe_bind("reader", stream=STREAM)
        while out.messages < total:
            for msg in await sub.fetch(min(1000, total - out.messages), timeout=10):
                out.file(msg.subject, dict(msg.headers or {}), msg.data)
    finally:
        await nc.close()
    return out

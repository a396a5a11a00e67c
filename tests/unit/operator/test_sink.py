"""The NATS KV sink against a real nats-server: bucket creation, versions across restarts, CAS."""

from __future__ import annotations

from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client

from gateway.embedded_nats import EmbeddedNats
from sgw_operator.errors import SinkUnavailable
from sgw_operator.settings import KvSettings, NatsSettings
from sgw_operator.sink import MemoryTableSink, NatsKvSink
from sgw_routes.model import Route, RoutingTable, decode_table, encode_table

TABLE = RoutingTable(routes=(Route(name="voice/a", control_id="a-*"),))
OTHER = RoutingTable(routes=(Route(name="voice/b", control_id="b-*"),))
KV = KvSettings(bucket="sgw-routes-test", key="table", history=3)


def sink_for(server: EmbeddedNats, **nats_kw: object) -> NatsKvSink:
    return NatsKvSink(NatsSettings(url=server.url, **nats_kw), KV)  # type: ignore[arg-type]


@pytest.fixture
async def client(nats_server: EmbeddedNats) -> AsyncIterator[Client]:
    nc = await nats.connect(nats_server.url)
    yield nc
    await nc.close()


async def live(nc: Client) -> RoutingTable:
    entry = await (await nc.jetstream().key_value(KV.bucket)).get(KV.key)
    return decode_table(entry.value or b"")


async def test_creates_the_bucket_and_publishes(nats_server: EmbeddedNats, client: Client) -> None:
    sink = sink_for(nats_server)
    await sink.open()
    try:
        assert (sink.published, sink.is_open) == (None, True)
        status = await (await client.jetstream().key_value(KV.bucket)).status()
        assert status.history == 3
        written = await sink.publish(TABLE)
        assert written.version == 1
        assert written.routes == TABLE.routes
        assert await live(client) == written
        assert sink.published == written
    finally:
        await sink.close()
    assert not sink.is_open


async def test_versions_strictly_increase_across_restarts(nats_server: EmbeddedNats, client: Client) -> None:
    versions: list[int] = []
    for table in (TABLE, OTHER, TABLE):
        sink = sink_for(nats_server)
        await sink.open()
        if sink.published is not None:
            assert sink.published.version == versions[-1]
        versions.append((await sink.publish(table)).version)
        await sink.close()
    assert versions == sorted(set(versions))
    assert (await live(client)).routes == TABLE.routes


async def test_a_foreign_write_is_noticed_and_outnumbered(nats_server: EmbeddedNats, client: Client) -> None:
    sink = sink_for(nats_server)
    await sink.open()
    try:
        await sink.publish(TABLE)
        kv = await client.jetstream().key_value(KV.bucket)
        await kv.put(KV.key, encode_table(RoutingTable(version=50, routes=OTHER.routes)))
        written = await sink.publish(TABLE)
        assert written.version == 51
        assert await live(client) == written
    finally:
        await sink.close()


async def test_a_deleted_or_garbled_key_is_replaced_with_a_higher_version(
    nats_server: EmbeddedNats, client: Client
) -> None:
    first = sink_for(nats_server)
    await first.open()
    before = await first.publish(TABLE)
    await first.close()
    kv = await client.jetstream().key_value(KV.bucket)
    await kv.delete(KV.key)

    sink = sink_for(nats_server)
    await sink.open()
    try:
        assert sink.published is None
        written = await sink.publish(TABLE)
        assert written.version > before.version
        await kv.put(KV.key, b"not a table")
    finally:
        await sink.close()

    sink = sink_for(nats_server)
    await sink.open()
    try:
        assert sink.published is None
        assert (await sink.publish(OTHER)).version > written.version
    finally:
        await sink.close()


async def test_unreachable_nats_is_a_sink_error(nats_server: EmbeddedNats) -> None:
    url = nats_server.url
    await nats_server.stop()
    sink = NatsKvSink(NatsSettings(url=url, connect_timeout=0.2), KV)
    with pytest.raises(SinkUnavailable, match="cannot connect to NATS"):
        await sink.open()
    assert not sink.is_open
    with pytest.raises(SinkUnavailable):
        await sink.publish(TABLE)
    await sink.close()


async def test_publish_during_an_outage_fails_and_works_after(nats_server: EmbeddedNats, client: Client) -> None:
    sink = sink_for(nats_server, connect_timeout=0.5)
    await sink.open()
    try:
        await sink.publish(TABLE)
        await nats_server.stop()
        with pytest.raises(SinkUnavailable):
            await sink.publish(OTHER)
        await nats_server.start()
        for _ in range(100):
            try:
                written = await sink.publish(OTHER)
                break
            except SinkUnavailable:
                continue
        else:
            pytest.fail("the sink never recovered")
        assert written.routes == OTHER.routes
    finally:
        await sink.close()


async def test_memory_twin_has_the_same_contract() -> None:
    sink = MemoryTableSink(initial=RoutingTable(version=7))
    assert not sink.is_open
    await sink.open()
    assert (await sink.publish(TABLE)).version == 8
    sink.fail = True
    with pytest.raises(SinkUnavailable):
        await sink.publish(TABLE)
    await sink.close()
    assert sink.history == [RoutingTable(version=8, routes=TABLE.routes)]

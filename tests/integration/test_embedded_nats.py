import nats

from gateway.embedded_nats import EmbeddedNats


async def test_embedded_nats_roundtrip_and_restart_on_same_port(nats_server: EmbeddedNats) -> None:
    nc = await nats.connect(nats_server.url)
    sub = await nc.subscribe("x.>")
    await nc.publish("x.y", b"hello")
    msg = await sub.next_msg(timeout=5)
    assert msg.data == b"hello"
    await nc.close()
    port = nats_server.port
    await nats_server.restart()
    assert nats_server.port == port
    nc = await nats.connect(nats_server.url)
    assert nc.is_connected
    await nc.close()

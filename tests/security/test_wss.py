"""``wss`` served by the gateway itself (``server.tls_cert_file`` / ``server.tls_key_file``).

A simulated SignalWire call over TLS, verified against the test CA with hostname checking, must
deliver every frame; a client that does not trust the certificate, or speaks plain ``ws`` to the
TLS port, gets no stream.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from gateway.audio import parse_codec
from gateway.embedded_nats import EmbeddedNats
from gateway.tools.providers import StreamSpec
from gateway.tools.providers.twilio import SignalWireWire
from gateway.tools.wire import Faults, FramePlan, make_signal, track_seed
from tests.reliability.conftest import GatewayFactory, RecorderFactory
from tests.reliability.harness import ErrorWatch, Recorder, eventually
from tests.security.certs import self_signed


@dataclass
class TlsCall:
    call_id: str
    sent: dict[str, list[bytes]]
    close_code: int | None
    tls: str


async def call_over_tls(url: str, context: ssl.SSLContext, frames: int = 100) -> TlsCall:
    """One both-tracks call in the simulator's wire format (the simulator takes no TLS context)."""
    codec = parse_codec("PCMU")
    wire = SignalWireWire(StreamSpec(SignalWireWire.new_ids(), ("inbound", "outbound"), codec))
    lanes = wire.lane_sources(lambda t: make_signal("speech", codec, track_seed(5, 0, t), t))
    plan = FramePlan(lanes, Faults(), "tls", sequence=wire.next_sequence, first_timestamp=wire.first_timestamp)
    sent: dict[str, list[bytes]] = {"inbound": [], "outbound": []}
    async with aiohttp.ClientSession() as http, http.ws_connect(url, ssl=context) as ws:
        transport = ws.get_extra_info("ssl_object")
        tls = f"{transport.version()} {transport.cipher()[0]}" if transport is not None else "none"
        await ws.send_str(wire.connected())
        await ws.send_str(wire.start())
        for _ in range(frames):
            for frame in plan.tick():
                await ws.send_str(wire.media(frame))
                sent[frame.track].append(frame.payload)
        await ws.send_str(wire.stop())
        await ws.close()
        return TlsCall(wire.stream.ids.call_id, sent, ws.close_code, tls)


def delivered(rec: Recorder, call: TlsCall) -> bool:
    return rec.stopped(call.call_id) is not None


async def test_a_call_over_wss_is_delivered(
    nats_server: EmbeddedNats,
    gateway_factory: GatewayFactory,
    recorder_factory: RecorderFactory,
    error_watch: ErrorWatch,
    tmp_path: Path,
) -> None:
    pair = self_signed(tmp_path)
    gw = await gateway_factory(nats_server.url, **{"server.tls_cert_file": pair.cert, "server.tls_key_file": pair.key})
    assert gw.ws_url.startswith("wss://127.0.0.1:")
    rec = await recorder_factory(nats_server.url)

    trusted = ssl.create_default_context(cafile=str(pair.cert))
    call = await call_over_tls(gw.ws_url, trusted)
    await eventually(lambda: delivered(rec, call), 10, "wss call delivered")
    for track, payloads in call.sent.items():
        assert [fr.payload for fr in rec.audio[(call.call_id, track)]] == payloads
    assert call.close_code == 1000

    # A client with only the public CAs refuses this certificate: TLS is really in the path.
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await call_over_tls(gw.ws_url, ssl.create_default_context(), frames=1)
    # Plain ws to the TLS port never becomes a stream.
    with pytest.raises((aiohttp.ClientError, ConnectionError)):
        await call_over_tls(gw.ws_url.replace("wss://", "ws://"), trusted, frames=1)
    streams = gw.metric("sgw_streams_started_total")
    print(f"wss: {call.tls}, {sum(map(len, call.sent.values()))} frames delivered; untrusted and plain ws refused")
    assert streams == 1
    assert not error_watch.problems(), error_watch.problems()

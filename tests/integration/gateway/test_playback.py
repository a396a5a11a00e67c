"""The back-channel of bidirectional streams: consumers publish on play.{call_id}, the pod that
holds the stream sends the provider's own messages down the WebSocket."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

from gateway.protocol.playback import PlayAudio, PlayCommand, parse_play_message
from gateway.tools.simulate import SimulateOptions, simulate
from tests.integration.gateway.conftest import GatewayFactory

ROUTES = """
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: voicebot}
spec:
  match: {controlId: "bot-*", tracks: [inbound]}
  target: {subject: "bot.{call_id}.{track}"}
  playback: {subject: "play.{call_id}"}
"""


def test_consumer_messages_are_classified() -> None:
    assert parse_play_message(b"\xff\x7f\x00") == PlayAudio(b"\xff\x7f\x00")
    assert parse_play_message(b'{"type":"mark","name":"m1"}') == PlayCommand("mark", "m1")
    assert parse_play_message(b'{"type":"clear"}') == PlayCommand("clear")
    assert parse_play_message(b'{"type":"dtmf","digit":"12#"}') == PlayCommand("dtmf", "12#")
    assert parse_play_message(b"{not json") == PlayAudio(b"{not json")  # audio that starts with 0x7B


async def test_audio_mark_clear_dtmf_reach_the_provider(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    gw = await gateway_factory(**{"routing.source": "file", "routing.file": routes})
    call = asyncio.create_task(
        simulate(
            SimulateOptions(url=gw.ws_url, calls=1, track="inbound", duration=1.5, realtime=True, control_id="bot-1")
        )
    )
    await gw.captured.wait_for(lambda: bool(gw.captured.events_of("started")))
    call_id = gw.captured.events_of("started")[0]["call_id"]
    stream_id = gw.captured.events_of("started")[0]["stream_id"]
    reply = bytes([0xFF, 0x7F]) * 80
    await gw.nc.publish(f"play.{call_id}", reply)
    await gw.nc.publish(f"play.{call_id}", b'{"type":"mark","name":"greeting-1"}')
    await gw.nc.publish(f"play.{call_id}", b'{"type":"dtmf","digit":"5"}')
    await gw.nc.publish(f"play.{call_id}", b'{"type":"mark","name":""}')  # refused: a mark needs a name
    await gw.nc.publish(f"play.{call_id}", b'{"type":"clear"}')
    report = await call
    received = [json.loads(m) for m in report.calls[0].received if isinstance(m, str)]
    assert [m["event"] for m in received] == ["media", "mark", "dtmf", "clear"]
    assert all(m["streamSid"] == stream_id for m in received)
    assert base64.b64decode(received[0]["media"]["payload"]) == reply
    assert received[1]["mark"] == {"name": "greeting-1"} and received[2]["dtmf"] == {"digit": "5"}
    for reason, count in (("media", 1), ("mark", 1), ("dtmf", 1), ("clear", 1), ("invalid", 1)):
        assert gw.metric("sgw_playback_messages_total", reason=reason) == count
    # after the stream ended the subscription is gone: nothing is sent, nothing breaks
    await gw.nc.publish(f"play.{call_id}", reply)
    await gw.nc.flush()
    assert gw.metric("sgw_playback_messages_total", reason="media") == 1

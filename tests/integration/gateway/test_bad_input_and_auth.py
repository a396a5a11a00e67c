"""Malformed input, auth and limits against the real gateway: each bad socket is closed alone."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.tools.simulate import SimulateOptions, simulate
from tests.integration.gateway.conftest import GatewayFactory, RunningGateway

START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "streamSid": "bad-stream",
        "accountSid": "acc",
        "callSid": "bad-call",
        "tracks": ["inbound"],
        "customParameters": {},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
}


def media(ts: int, payload: bytes = b"\xff" * 160) -> str:
    return json.dumps(
        {
            "event": "media",
            "media": {"track": "inbound", "timestamp": str(ts), "payload": base64.b64encode(payload).decode()},
        }
    )


BAD_INPUTS: list[tuple[str, list[str | bytes], int, str]] = [
    ("not json", [json.dumps(START), "{not json"], 1007, "malformed"),
    (
        "invalid base64",
        [json.dumps(START), '{"event":"media","media":{"track":"inbound","payload":"@@@"}}'],
        1007,
        "malformed",
    ),
    ("binary frame", [json.dumps(START), b"\x00\x01\x02"], 1003, "binary_frame"),
    ("media before start", [media(0)], 1008, "media_before_start"),
    ("second start", [json.dumps(START), json.dumps(START)], 1008, "duplicate_start"),
    ("oversized frame", [json.dumps(START), "x" * 70_000], 1009, "too_big"),
    ("oversized payload", [json.dumps(START), media(0, b"\x00" * 20_000)], 1008, "payload_too_big"),
    (
        "negative counter",
        [json.dumps(START), '{"event":"media","sequenceNumber":-5,"media":{"track":"inbound","payload":""}}'],
        1007,
        "malformed",
    ),
]


async def run_bad_socket(url: str, frames: list[str | bytes]) -> tuple[int | None, str]:
    async with aiohttp.ClientSession() as http, http.ws_connect(url, max_msg_size=0) as ws:
        for frame in frames:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
        msg = await asyncio.wait_for(ws.receive(), 10)
        return ws.close_code, str(msg.extra or "")


@pytest.mark.parametrize(("name", "frames", "code", "reason"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
async def test_bad_input_closes_only_its_own_socket(
    gateway: RunningGateway, name: str, frames: list[str | bytes], code: int, reason: str
) -> None:
    good = asyncio.create_task(
        simulate(SimulateOptions(url=gateway.ws_url, calls=3, track="both", duration=0.6, realtime=True))
    )
    await asyncio.sleep(0.1)  # let the good calls get going: the bad socket must arrive mid-stream
    close_code, _ = await run_bad_socket(gateway.ws_url, frames)
    assert close_code == code, name
    report = await good
    await gateway.captured.wait_for(
        lambda: len([e for e in gateway.captured.events_of("stopped") if e["call_id"] != "bad-call"]) == 3
    )
    for call in report.calls:
        assert call.close_code == 1000
        for track in ("inbound", "outbound"):
            got = [m.data for m in gateway.captured.audio if m.subject == f"audio.{call.call_id}.{track}"]
            assert got == call.sent[track]
    await gateway.metric_reaches("sgw_protocol_errors_total", 1, reason=reason)
    await gateway.metric_reaches("sgw_streams_closed_total", 1, code=str(code))
    if frames and frames[0] == json.dumps(START):
        # a started stream that fails still reports: error, then stopped (last)
        bad = [e for e in gateway.captured.events if e["call_id"] == "bad-call"]
        await gateway.captured.wait_for(
            lambda: any(e["call_id"] == "bad-call" and e["type"] == "stopped" for e in gateway.captured.events)
        )
        bad = [e["type"] for e in gateway.captured.events if e["call_id"] == "bad-call"]
        assert bad == ["started", "error", "stopped"]


async def test_unknown_events_are_ignored_and_counted(gateway: RunningGateway) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(gateway.ws_url) as ws:
        await ws.send_str(json.dumps(START))
        await ws.send_str('{"event":"somethingNew","x":1}')
        await ws.send_str(media(0))
        await ws.send_str('{"event":"stop"}')
        await ws.receive()
        assert ws.close_code == 1000
    await gateway.metric_reaches("sgw_messages_ignored_total", 1)


async def test_socket_that_never_starts_is_closed_after_the_start_timeout(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(**{"websocket.start_timeout": 0.3})
    async with aiohttp.ClientSession() as http, http.ws_connect(gw.ws_url) as ws:
        await asyncio.wait_for(ws.receive(), 10)
        assert ws.close_code == 1008
    await gw.metric_reaches("sgw_protocol_errors_total", 1, reason="start_timeout")


async def test_stream_limit_answers_503_at_upgrade(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(**{"server.max_streams": 2})
    async with aiohttp.ClientSession() as http:
        held = [await http.ws_connect(gw.ws_url) for _ in range(2)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(gw.ws_url)
        assert info.value.status == 503
        for ws in held:
            await ws.close()
    assert gw.metric("sgw_ws_upgrades_rejected_total", reason="stream_limit") == 1


def write_secured_routes(tmp_path: Path, token: str) -> tuple[Path, Path]:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        """
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: secured}
spec:
  match: {controlId: "sec-*"}
  auth: {bearerTokenSecretRef: {name: sec-token, key: token}}
  target: {subject: "secure.{call_id}.{track}"}
"""
    )
    secrets = tmp_path / "secrets"
    (secrets / "sec-token").mkdir(parents=True)
    (secrets / "sec-token" / "token").write_text(token + "\n")  # trailing newline is stripped
    return routes, secrets


async def test_wrong_or_missing_token_refused_before_any_audio(
    gateway_factory: GatewayFactory, tmp_path: Path, caplog: Any
) -> None:
    routes, secrets = write_secured_routes(tmp_path, "t0ps3cret")
    gw = await gateway_factory(
        **{
            "routing.source": "file",
            "routing.file": routes,
            "routing.secrets_dir": secrets,
            "routing.default_route": False,
        }
    )
    caplog.set_level("DEBUG")
    # route key in the path: refused with 401 at the upgrade
    for token in ("wrong-token", None):
        report = await simulate(
            SimulateOptions(url=gw.ws_url, calls=1, duration=0.2, realtime=False, control_id="sec-1", token=token)
        )
        assert report.calls[0].error is not None and "401" in report.calls[0].error
    # route key only in customParameters: refused at start with 1008, before any frame
    report = await simulate(
        SimulateOptions(
            url=gw.ws_url,
            calls=1,
            duration=0.2,
            realtime=False,
            control_id="sec-2",
            control_id_in_path=False,
            token="nope",
        )
    )
    assert report.calls[0].close_code == 1008
    assert gw.captured.audio == [] and gw.captured.events == []
    await gw.metric_reaches("sgw_auth_failures_total", 2, reason="invalid")
    await gw.metric_reaches("sgw_auth_failures_total", 1, reason="missing")
    # the right token streams
    report = await simulate(
        SimulateOptions(url=gw.ws_url, calls=1, duration=0.2, realtime=False, control_id="sec-3", token="t0ps3cret")
    )
    assert report.calls[0].close_code == 1000
    await gw.captured.wait_for(lambda: len(gw.captured.events_of("stopped")) == 1)
    assert {m.subject.split(".")[0] for m in gw.captured.audio} == {"secure"}
    # no route for this key and no default route: 1008
    report = await simulate(SimulateOptions(url=gw.ws_url, calls=1, duration=0.2, realtime=False, control_id="other"))
    assert report.calls[0].close_code == 1008
    assert "t0ps3cret" not in caplog.text and "wrong-token" not in caplog.text


async def test_routes_file_reload_applies_to_new_streams_only(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    doc = """
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {{name: r}}
spec:
  match: {{controlId: "*"}}
  target: {{subject: "{prefix}.{{call_id}}.{{track}}"}}
"""
    routes.write_text(doc.format(prefix="before"))
    gw = await gateway_factory(**{"routing.source": "file", "routing.file": routes, "routing.file_poll_interval": 0.05})
    live = asyncio.create_task(simulate(SimulateOptions(url=gw.ws_url, calls=1, duration=1.0, realtime=True, seed=1)))
    await gw.captured.wait_for(lambda: len(gw.captured.audio) > 5)
    routes.write_text(doc.format(prefix="after"))
    source: Any = gw.server.ctx.routes  # type: ignore[union-attr]
    await gw.captured.wait_for(lambda: source.snapshot().version >= 2, timeout=10)
    routes.write_text("this: [is not valid")  # a bad edit keeps the previous table
    await gw.metric_reaches("sgw_route_table_updates_total", 1, reason="invalid")
    new = await simulate(SimulateOptions(url=gw.ws_url, calls=1, duration=0.2, realtime=False, seed=2))
    old = await live
    await gw.captured.wait_for(lambda: len(gw.captured.events_of("stopped")) == 2)
    old_subjects = {m.subject for m in gw.captured.audio if old.calls[0].call_id in m.subject}
    new_subjects = {m.subject for m in gw.captured.audio if new.calls[0].call_id in m.subject}
    assert old_subjects == {f"before.{old.calls[0].call_id}.inbound"}  # the live stream kept its route
    assert new_subjects == {f"after.{new.calls[0].call_id}.inbound"}
    assert len([m for m in gw.captured.audio if m.subject.startswith("before.")]) == len(old.calls[0].sent["inbound"])


@pytest.mark.parametrize(
    ("token_bytes", "message"),
    [(b"\xff\xfe\x00bad", "not readable as UTF-8"), (b"  \n", "is empty"), (None, "not readable")],
)
def test_routes_file_secret_problems_are_config_errors(tmp_path: Path, token_bytes: bytes | None, message: str) -> None:
    from gateway.errors import ConfigError
    from gateway.routing.file import load_routes_file

    routes, secrets = write_secured_routes(tmp_path, "x")
    token_file = secrets / "sec-token" / "token"
    if token_bytes is None:
        token_file.unlink()
    else:
        token_file.write_bytes(token_bytes)
    with pytest.raises(ConfigError) as info:
        load_routes_file(routes, secrets, default=False, version=1)
    assert message in info.value.message and info.value.setting == "SGW_ROUTING__SECRETS_DIR"

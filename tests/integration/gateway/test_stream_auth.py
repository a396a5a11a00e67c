"""Stream authentication against a real gateway and nats-server: every auth kind accepted and
refused, at the upgrade (route key in the path: 401 and a challenge) and at ``start`` (1008
``unauthorized``), nothing published for a refused stream, and no credential in the route table
or the logs. Routes come from a routes file with its Secrets in a secrets directory (file mode)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.errors import ConfigError
from gateway.routing.file import load_routes_file
from sgw_routes.credentials import hash_basic, twilio_key
from sgw_routes.model import NO_BEARER_TOKEN, encode_table, hash_token
from tests.authstream import Outcome, basic, stream_with_credentials
from tests.authstream import twilio_signature as signature_of
from tests.integration.gateway.conftest import GatewayFactory, RunningGateway

SW_TOKEN = "signalwire-bearer-" + "b" * 24
EXOTEL_USER, EXOTEL_PASSWORD = "exotel-api-key", "exotel-api-t0ken-" + "p" * 16
TWILIO_TOKEN = "twilio-auth-token-" + "t" * 14
WRONG = "wrong-credential-" + "w" * 16
SECRETS = (SW_TOKEN, EXOTEL_PASSWORD, TWILIO_TOKEN, WRONG)

ROUTES = """
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: signalwire}
spec:
  match: {controlId: "sw-*"}
  auth: {bearerTokenSecretRef: {name: sw-token}}
  target: {subject: "sw.{call_id}.{track}"}
---
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: exotel}
spec:
  match: {controlId: "ex-*"}
  auth: {basicAuthSecretRef: {name: exotel-auth}}
  target: {subject: "ex.{call_id}.{track}"}
---
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: twilio}
spec:
  match: {controlId: "tw-*"}
  auth: {twilioSignature: {authTokenSecretRef: {name: twilio, key: authToken}}}
  target: {subject: "tw.{call_id}.{track}"}
---
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: mixed}
spec:
  match: {controlId: "mix-*"}
  auth:
    bearerTokenSecretRef: {name: sw-token}
    twilioSignature: {authTokenSecretRef: {name: twilio, key: authToken}}
  target: {subject: "mix.{call_id}.{track}"}
"""


def write_secrets(root: Path, files: dict[str, str]) -> Path:
    secrets = root / "secrets"
    for relative, value in files.items():
        path = secrets / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(value + "\n")  # as a mounted Secret may end: trailing whitespace is stripped
    return secrets


@pytest.fixture
def routes_and_secrets(tmp_path: Path) -> tuple[Path, Path]:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    secrets = write_secrets(
        tmp_path,
        {
            "sw-token/token": SW_TOKEN,
            "exotel-auth/username": EXOTEL_USER,
            "exotel-auth/password": EXOTEL_PASSWORD,
            "twilio/authToken": TWILIO_TOKEN,
        },
    )
    return routes, secrets


async def secured_gateway(factory: GatewayFactory, routes: Path, secrets: Path, **more: Any) -> RunningGateway:
    return await factory(
        **{
            "routing.source": "file",
            "routing.file": routes,
            "routing.secrets_dir": secrets,
            "routing.default_route": False,
            **more,
        }
    )


def twilio_signature(url: str, token: str = TWILIO_TOKEN) -> str:
    return signature_of(url, token)


async def call(gw: RunningGateway, call_id: str, headers: dict[str, str], *, key: str, in_path: bool) -> Outcome:
    return await stream_with_credentials(gw.ws_url, call_id, headers, key=key, in_path=in_path)


def published(gw: RunningGateway, call_id: str) -> list[str]:
    subjects = [m.subject for m in gw.captured.audio if call_id in m.subject]
    return subjects + [e["type"] for e in gw.captured.events if e.get("call_id") == call_id]


CASES: list[tuple[str, str, dict[str, str], str]] = [
    # (name, route key prefix, headers that pass, audio subject prefix)
    ("bearer", "sw", {"Authorization": f"Bearer {SW_TOKEN}"}, "sw"),
    ("telnyx header", "sw", {"X-Telnyx-Streaming-Auth-Token": SW_TOKEN}, "sw"),
    ("basic", "ex", {"Authorization": basic(EXOTEL_USER, EXOTEL_PASSWORD)}, "ex"),
    ("mixed by bearer", "mix", {"Authorization": f"Bearer {SW_TOKEN}"}, "mix"),
]
REFUSED: list[tuple[str, str, dict[str, str], str, str]] = [
    # (name, key prefix, headers, reason label, kind label)
    ("no credential", "sw", {}, "missing", "none"),
    ("wrong bearer", "sw", {"Authorization": f"Bearer {WRONG}"}, "invalid", "bearer"),
    ("wrong telnyx", "sw", {"X-Telnyx-Streaming-Auth-Token": WRONG}, "invalid", "bearer"),
    ("wrong password", "ex", {"Authorization": basic(EXOTEL_USER, WRONG)}, "invalid", "basic"),
    ("wrong user", "ex", {"Authorization": basic(WRONG, EXOTEL_PASSWORD)}, "invalid", "basic"),
    ("bearer on a basic route", "ex", {"Authorization": f"Bearer {SW_TOKEN}"}, "invalid", "bearer"),
    ("basic on a bearer route", "sw", {"Authorization": basic(EXOTEL_USER, SW_TOKEN)}, "invalid", "basic"),
    (
        "wrong twilio signature",
        "tw",
        {"X-Twilio-Signature": twilio_signature("wss://x/y", WRONG)},
        "invalid",
        "twilio_signature",
    ),
]
CHALLENGES = {
    "sw": 'Bearer realm="stream-gateway"',
    "ex": 'Basic realm="stream-gateway", charset="UTF-8"',
    "tw": 'TwilioSignature realm="stream-gateway"',
}


@pytest.mark.parametrize("in_path", [True, False], ids=["path key", "key at start"])
async def test_each_auth_kind_is_accepted_and_refused(
    gateway_factory: GatewayFactory, routes_and_secrets: tuple[Path, Path], caplog: Any, in_path: bool
) -> None:
    caplog.set_level("DEBUG")
    gw = await secured_gateway(gateway_factory, *routes_and_secrets)
    for i, (name, prefix, headers, subject) in enumerate(CASES):
        call_id = f"ok-{i}"
        outcome = await call(gw, call_id, headers, key=f"{prefix}-{i}", in_path=in_path)
        assert (outcome.status, outcome.close_code) == (None, 1000), name
        await gw.captured.wait_for(lambda c=call_id: "stopped" in published(gw, c))  # type: ignore[misc]
        assert {m.subject for m in gw.captured.audio if call_id in m.subject} == {f"{subject}.{call_id}.inbound"}
        assert len([m for m in gw.captured.audio if call_id in m.subject]) == 3, name

    for i, (name, prefix, headers, _, _) in enumerate(REFUSED):
        outcome = await call(gw, f"refused-{i}", headers, key=f"{prefix}-r{i}", in_path=in_path)
        if in_path:
            assert (outcome.status, outcome.challenge) == (401, CHALLENGES[prefix]), name
        else:
            assert (outcome.status, outcome.close_code, outcome.close_reason) == (None, 1008, "unauthorized"), name
    for reason, kind in {(r, k) for *_, r, k in REFUSED}:
        expected = sum(1 for *_, r, k in REFUSED if (r, k) == (reason, kind))
        await gw.metric_reaches("sgw_auth_failures_total", expected, reason=reason, kind=kind)
    upgrades = gw.metric("sgw_ws_upgrades_rejected_total", reason="unauthorized")
    assert upgrades == (len(REFUSED) if in_path else 0)
    # Nothing of a refused stream reached NATS: no audio, not even ``started``.
    assert all(published(gw, f"refused-{i}") == [] for i in range(len(REFUSED)))
    logs = caplog.text
    assert all(secret not in logs for secret in SECRETS)


async def test_twilio_signature_over_the_url_twilio_connected_to(
    gateway_factory: GatewayFactory, routes_and_secrets: tuple[Path, Path]
) -> None:
    """The URL is rebuilt from Host + the request target, query included (aiohttp sends Host as
    host:port); a route that also takes a bearer token accepts the signature alone."""
    gw = await secured_gateway(gateway_factory, *routes_and_secrets)
    host = gw.ws_url.removeprefix("ws://").split("/")[0]
    for i, target in enumerate(["/stream/tw-1", "/stream/tw-2?provider=twilio&x=1", "/stream/mix-3"]):
        url = f"wss://{host}{target}"
        outcome = await call(
            gw, f"tw-ok-{i}", {"X-Twilio-Signature": twilio_signature(url)}, key=target[8:], in_path=True
        )
        assert (outcome.status, outcome.close_code) == (None, 1000), target
    # The query is signed: the same signature on another query string is refused, so is another host.
    signed = twilio_signature(f"wss://{host}/stream/tw-4?a=1")
    refused = await call(gw, "tw-bad-1", {"X-Twilio-Signature": signed}, key="tw-4?a=2", in_path=True)
    assert refused.status == 401
    elsewhere = twilio_signature("wss://other.example.com/stream/tw-5")
    refused = await call(gw, "tw-bad-2", {"X-Twilio-Signature": elsewhere}, key="tw-5", in_path=True)
    assert refused.status == 401
    # Without a path key the signature is checked at start, against the URL of the upgrade.
    at_start = await call(
        gw, "tw-ok-start", {"X-Twilio-Signature": twilio_signature(f"wss://{host}/stream")}, key="tw-6", in_path=False
    )
    assert at_start.close_code == 1000
    await gw.metric_reaches("sgw_auth_failures_total", 2, reason="invalid", kind="twilio_signature")
    assert published(gw, "tw-bad-1") == published(gw, "tw-bad-2") == []


async def test_a_proxy_rewriting_the_host_needs_the_public_url(
    gateway_factory: GatewayFactory, routes_and_secrets: tuple[Path, Path]
) -> None:
    """Twilio signed wss://calls.example.com/voice/stream/tw-1; the gateway behind the proxy sees
    another Host and no /voice prefix: ``websocket.public_url`` restores what Twilio saw."""
    public = "wss://calls.example.com/voice"
    signature = {"X-Twilio-Signature": twilio_signature(f"{public}/stream/tw-1")}
    plain = await secured_gateway(gateway_factory, *routes_and_secrets)
    assert (await call(plain, "tw-proxy-0", signature, key="tw-1", in_path=True)).status == 401
    behind = await secured_gateway(gateway_factory, *routes_and_secrets, **{"websocket.public_url": public})
    assert (await call(behind, "tw-proxy-1", signature, key="tw-1", in_path=True)).close_code == 1000


async def test_the_route_table_holds_no_credential(routes_and_secrets: tuple[Path, Path]) -> None:
    routes, secrets = routes_and_secrets
    table = load_routes_file(routes, secrets, default=False, version=1)
    by_name = {r.name: r for r in table.routes}
    assert by_name["signalwire"].token_sha256 == hash_token(SW_TOKEN)
    assert by_name["exotel"].basic_sha256 == hash_basic(EXOTEL_USER, EXOTEL_PASSWORD)
    assert by_name["exotel"].token_sha256 == by_name["twilio"].token_sha256 == NO_BEARER_TOKEN
    assert by_name["twilio"].twilio_key == by_name["mixed"].twilio_key == twilio_key(TWILIO_TOKEN)
    wire = encode_table(table)
    for secret in (SW_TOKEN, EXOTEL_USER, EXOTEL_PASSWORD, TWILIO_TOKEN):
        assert secret.encode() not in wire


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"exotel-auth/username": EXOTEL_USER}, "exotel-auth/password not readable"),
        ({"exotel-auth/username": "a:b", "exotel-auth/password": "p"}, "cannot contain ':'"),
        ({"exotel-auth/username": EXOTEL_USER, "exotel-auth/password": "  "}, "is empty"),
    ],
)
def test_basic_auth_secret_problems_are_config_errors(tmp_path: Path, files: dict[str, str], message: str) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES.split("---")[1])
    with pytest.raises(ConfigError) as info:
        load_routes_file(routes, write_secrets(tmp_path, files), default=False, version=1)
    assert message in info.value.message and info.value.setting == "SGW_ROUTING__SECRETS_DIR"
    assert "p" * 16 not in info.value.message


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("  auth: {mtls: {secretRef: {name: x}}}", "spec.auth.mtls"),
        ("  auth: {bearerTokenSecretRef: {name: t, namespace: other}}", "spec.auth.bearerTokenSecretRef.namespace"),
        ("  target: {subject: 'a.{call_id}', encryption: on}", "spec.target.encryption"),
        ("  match: {controlId: 'x-*', fromNumber: '+1555'}", "spec.match.fromNumber"),
        ("  playback: {subject: 'p.{call_id}', rate: 2}", "spec.playback.rate"),
        ("  futureField: 1", "spec.futureField"),
    ],
)
def test_a_routes_file_with_an_unknown_field_is_rejected(tmp_path: Path, extra: str, field: str) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        f"apiVersion: streamgateway.io/v1alpha1\nkind: StreamRoute\nmetadata: {{name: r}}\nspec:\n{extra}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_routes_file(routes, tmp_path, default=False, version=1)
    assert "UnknownField" in info.value.message and field in info.value.message


async def test_a_reload_with_an_unknown_field_keeps_the_previous_routes(
    gateway_factory: GatewayFactory, routes_and_secrets: tuple[Path, Path]
) -> None:
    routes, secrets = routes_and_secrets
    gw = await secured_gateway(gateway_factory, routes, secrets, **{"routing.file_poll_interval": 0.05})
    routes.write_text(ROUTES.replace("auth: {bearerTokenSecretRef: {name: sw-token}}", "auth: {oidc: {issuer: x}}"))
    await gw.metric_reaches("sgw_route_table_updates_total", 1, reason="invalid")
    # The signalwire route was not reloaded open: its token is still required.
    assert (await call(gw, "reload-1", {}, key="sw-1", in_path=True)).status == 401
    ok = await call(gw, "reload-2", {"Authorization": f"Bearer {SW_TOKEN}"}, key="sw-2", in_path=True)
    assert ok.close_code == 1000


async def test_a_telnyx_stream_with_its_stream_auth_token(
    gateway_factory: GatewayFactory, routes_and_secrets: tuple[Path, Path], caplog: Any
) -> None:
    """Telnyx sends ``stream_auth_token`` as the ``X-Telnyx-Streaming-Auth-Token`` upgrade header
    (and repeats it in the ``connected`` frame): a bearer route takes it; the copy in the frame is
    neither published nor logged."""
    caplog.set_level("DEBUG")
    gw = await secured_gateway(gateway_factory, *routes_and_secrets)
    payload = base64.b64encode(b"\xff" * 160).decode()
    frames = [
        {"event": "connected", "version": "1.0.0", "connected": {"x-telnyx-streaming-auth-token": SW_TOKEN}},
        {
            "event": "start",
            "sequence_number": "1",
            "stream_id": "tx-stream-1",
            "start": {
                "call_control_id": "v3:tx-call-1",
                "custom_parameters": {},
                "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
            },
        },
        *(
            {
                "event": "media",
                "sequence_number": str(n + 2),
                "stream_id": "tx-stream-1",
                "media": {"track": "inbound", "chunk": str(n + 1), "timestamp": str(20 * n), "payload": payload},
            }
            for n in range(3)
        ),
        {"event": "stop", "sequence_number": "5", "stream_id": "tx-stream-1"},
    ]
    headers = {"X-Telnyx-Streaming-Auth-Token": SW_TOKEN}
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{gw.ws_url}/sw-telnyx?provider=telnyx", headers=headers) as ws,
    ):
        for frame in frames:
            await ws.send_str(json.dumps(frame))
        await asyncio.wait_for(ws.receive(), 10)
        assert ws.close_code == 1000
    await gw.captured.wait_for(lambda: "stopped" in published(gw, "v3:tx-call-1"))
    assert len([m for m in gw.captured.audio if m.subject == "sw.v3:tx-call-1.inbound"]) == 3
    started = next(e for e in gw.captured.events if e["type"] == "started")
    assert started["provider"] == "telnyx"
    bus = "".join(f"{m.subject}{m.headers}{m.data!r}" for m in [*gw.captured.audio, *gw.captured.event_msgs])
    assert SW_TOKEN not in bus and SW_TOKEN not in caplog.text
    wrong = await stream_with_credentials(
        gw.ws_url, "tx-wrong", {"X-Telnyx-Streaming-Auth-Token": WRONG}, key="sw-telnyx-2", in_path=True
    )
    assert wrong.status == 401

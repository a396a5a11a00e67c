"""``/status`` through a real gateway and nats-server: every provider's callback kind, authenticated
the way that provider authenticates, republished as a ``status`` event on the right subject; refused
(401, nothing published) unsigned or wrongly signed; 400 when malformed; 503 while NATS is down.

The signatures are computed here from each scheme's definition (hmac, hashlib, PyNaCl), not with
the gateway's own code. The gateway sits "behind an ingress": ``status.public_base_url`` says the
providers call ``https://streams.example.com/status``, so that is the URL they sign.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import nacl.signing
import pytest

from gateway.embedded_nats import EmbeddedNats
from tests.helpers import eventually
from tests.integration.gateway.conftest import GatewayFactory, RunningGateway, subscription_live

PUBLIC = "https://streams.example.com"
TWILIO_TOKEN = "twilio-auth-token-1"
SIGNALWIRE_KEY = "PSKsignalwire-signing-key"
PLIVO_TOKEN = "plivo-auth-token"
BASIC = ("bandwidth-user", "bandwidth-pass")
ROUTES = """
apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {name: sales}
spec:
  match: {controlId: "sales-*"}
  target: {subject: "sales.{call_id}.{track}", eventsSubject: "sales-events.{control_id}"}
"""


@dataclass
class Callback:
    """One provider request: what is sent, and the ``status`` event it must become."""

    method: str
    query: dict[str, str]
    body: bytes
    headers: dict[str, str]
    expect: dict[str, Any]
    subject: str
    sign: Callable[[Callback, Secrets], dict[str, str]] = field(repr=False, default=lambda c, s: {})

    @property
    def public_url(self) -> str:
        return f"{PUBLIC}/status" + (f"?{urlencode(self.query)}" if self.query else "")


@dataclass
class Secrets:
    twilio: str = TWILIO_TOKEN
    signalwire: str = SIGNALWIRE_KEY
    plivo: str = PLIVO_TOKEN
    telnyx: nacl.signing.SigningKey = field(default_factory=lambda: nacl.signing.SigningKey(b"\x07" * 32))
    basic: tuple[str, str] = BASIC
    now: Callable[[], int] = lambda: int(time.time())


WRONG = Secrets(
    twilio="wrong",
    signalwire="wrong",
    plivo="wrong",
    telnyx=nacl.signing.SigningKey(b"\x08" * 32),
    basic=(BASIC[0], "wrong"),
)


def b64_hmac(key: str, message: str, digest: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), message.encode(), digest).digest()).decode()


def form_params(body: bytes) -> str:
    pairs = sorted(tuple(p.split("=", 1)) for p in body.decode().split("&") if p)
    return "".join(k + v for k, v in pairs)  # the test bodies need no percent-decoding


def twilio_sign(c: Callback, s: Secrets) -> dict[str, str]:
    return {"X-Twilio-Signature": b64_hmac(s.twilio, c.public_url + form_params(c.body), "sha1")}


def signalwire_form_sign(c: Callback, s: Secrets) -> dict[str, str]:
    return {"X-SignalWire-Signature": b64_hmac(s.signalwire, c.public_url + form_params(c.body), "sha1")}


def signalwire_json_sign(c: Callback, s: Secrets) -> dict[str, str]:
    digest = hmac.new(s.signalwire.encode(), c.public_url.encode() + c.body, "sha1").hexdigest()
    return {"X-SignalWire-Signature": digest}


def telnyx_sign(c: Callback, s: Secrets) -> dict[str, str]:
    ts = str(s.now())
    signature = s.telnyx.sign(ts.encode() + b"|" + c.body).signature
    return {"telnyx-signature-ed25519": base64.b64encode(signature).decode(), "telnyx-timestamp": ts}


def plivo_sign(c: Callback, s: Secrets) -> dict[str, str]:
    # A POST with form fields and no query: "<url>?" + sorted name+value + "." + nonce
    nonce = "71283749201"
    signed = f"{PUBLIC}/status?{form_params(c.body)}.{nonce}"
    return {"X-Plivo-Signature-V3": b64_hmac(s.plivo, signed, "sha256"), "X-Plivo-Signature-V3-Nonce": nonce}


def basic_auth(c: Callback, s: Secrets) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(":".join(s.basic).encode()).decode()}


JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def json_body(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def callbacks() -> dict[str, Callback]:
    return {
        "swml-json": Callback(
            "POST",
            {},
            json_body(
                {
                    "event_type": "calling.call.stream",
                    "event_channel": "swml:8a1e",
                    "timestamp": 1777565701.56,
                    "project_id": "p-1",
                    "space_id": "sp-1",
                    "params": {
                        "call_id": "sw-call-1",
                        "node_id": "n-1",
                        "segment_id": "seg-1",
                        "control_id": "sales-1",
                        "state": "streaming",
                        "url": "wss://streams.example.com/stream/sales-1",
                        "name": "live",
                    },
                }
            ),
            JSON,
            {"provider": "signalwire", "call_id": "sw-call-1", "control_id": "sales-1", "state": "streaming"},
            "sales-events.sales-1",
            signalwire_json_sign,
        ),
        "swml-get": Callback(
            "GET",
            {
                "event_type": "calling.call.stream",
                "params.call_id": "sw-call-2",
                "params.control_id": "k-2",
                "params.state": "finished",
            },
            b"",
            {},
            {"provider": "signalwire", "call_id": "sw-call-2", "control_id": "k-2", "state": "finished"},
            "events.sw-call-2",
            signalwire_json_sign,
        ),
        "cxml-twilio": Callback(
            "POST",
            {},
            b"AccountSid=AC0001&CallSid=CA0001&StreamSid=MZ0001&StreamName=transcribe"
            b"&StreamEvent=stream-error&StreamError=connection_refused",
            FORM,
            {
                "provider": "twilio",
                "call_id": "CA0001",
                "stream_id": "MZ0001",
                "state": "stream-error",
                "error": "connection_refused",
            },
            "events.CA0001",
            twilio_sign,
        ),
        "cxml-signalwire": Callback(
            "POST",
            {},
            b"AccountSid=b08dacad&CallSid=76ac3c36&StreamSid=7d56cc11&StreamName=sales-3&StreamEvent=stream-started",
            FORM,
            {"provider": "signalwire", "call_id": "76ac3c36", "control_id": "sales-3", "state": "stream-started"},
            "sales-events.sales-3",
            signalwire_form_sign,
        ),
        "telnyx-json": Callback(
            "POST",
            {},
            json_body(
                {
                    "data": {
                        "event_type": "streaming.started",
                        "id": "0ccc7b54",
                        "occurred_at": "2026-04-30T12:00:00.000000Z",
                        "payload": {
                            "call_control_id": "v3-telnyx-call",
                            "stream_id": "tx-stream",
                            "stream_url": "wss://streams.example.com/stream/sales-4",
                        },
                        "record_type": "event",
                    }
                }
            ),
            JSON,
            {"provider": "telnyx", "call_id": "v3-telnyx-call", "control_id": "sales-4", "state": "streaming.started"},
            "sales-events.sales-4",
            telnyx_sign,
        ),
        "texml-form": Callback(
            "POST",
            {},
            b"AccountSid=tx-acc&CallSid=tx-call-5&StreamSid=tx-s5&StreamName=k-5&StreamEvent=stream-stopped",
            FORM,
            {"provider": "telnyx", "call_id": "tx-call-5", "control_id": "k-5", "state": "stream-stopped"},
            "events.tx-call-5",
            telnyx_sign,
        ),
        "plivo-form": Callback(
            "POST",
            {},
            b"Event=StartStream&CallUUID=pl-call-6&StreamID=pl-s6",
            FORM,
            {"provider": "plivo", "call_id": "pl-call-6", "stream_id": "pl-s6", "state": "StartStream"},
            "events.pl-call-6",
            plivo_sign,
        ),
        "bandwidth-json": Callback(
            "POST",
            {},
            json_body(
                {
                    "eventType": "mediaStreamStarted",
                    "accountId": "9900000",
                    "callId": "c-bw-7",
                    "eventTime": "2026-04-30T12:00:00.000Z",
                    "mediaStream": {"id": "bw-s7", "name": "sales-7", "destination": "wss://x/"},
                }
            ),
            JSON,
            {"provider": "bandwidth", "call_id": "c-bw-7", "control_id": "sales-7", "state": "mediaStreamStarted"},
            "sales-events.sales-7",
            basic_auth,
        ),
    }


KINDS = list(callbacks())


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, tmp_path: Path) -> RunningGateway:
    files = {
        "TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
        "SIGNALWIRE_SIGNING_KEY": SIGNALWIRE_KEY,
        "TELNYX_PUBLIC_KEY": base64.b64encode(bytes(Secrets().telnyx.verify_key)).decode(),
        "PLIVO_AUTH_TOKEN": PLIVO_TOKEN,
        "BASIC_USERNAME": BASIC[0],
        "BASIC_PASSWORD": BASIC[1],
    }
    env = {"SGW_STATUS__PUBLIC_BASE_URL": PUBLIC}
    for name, secret in files.items():
        path = tmp_path / name.lower()
        path.write_text(secret + "\n")
        env[f"SGW_STATUS__{name}_FILE"] = str(path)
    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES)
    return await gateway_factory(env, **{"routing.source": "file", "routing.file": routes})


async def send(gw: RunningGateway, c: Callback, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    url = gw.ws_url.replace("ws://", "http://").replace("/stream", "/status")
    async with (
        aiohttp.ClientSession() as http,
        http.request(c.method, url, params=c.query or None, data=c.body or None, headers={**c.headers, **headers}) as r,
    ):
        return r.status, await r.json()


@pytest.mark.parametrize("kind", KINDS)
async def test_each_kind_is_accepted_when_authenticated_and_republished(gw: RunningGateway, kind: str) -> None:
    c = callbacks()[kind]
    status, body = await send(gw, c, c.sign(c, Secrets()))
    assert (status, body) == (200, {"ok": True})
    await gw.captured.wait_for(lambda: len(gw.captured.events_of("status")) == 1)
    [event] = gw.captured.events_of("status")
    assert {k: event.get(k) for k in c.expect} == c.expect
    assert {"call_id", "stream_id", "control_id", "ts", "traceparent", "state", "name", "account_id"} <= set(event)
    assert [m.subject for m in gw.captured.event_msgs] == [c.subject]
    assert gw.metric("sgw_status_callbacks_total", provider=c.expect["provider"], reason="accepted") == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_unsigned_or_wrongly_signed_callbacks_are_refused_and_publish_nothing(
    gw: RunningGateway, kind: str
) -> None:
    c = callbacks()[kind]
    status, body = await send(gw, c, {})
    assert status == 401 and body["error"].startswith("unauthorized: no credential presented")
    status, body = await send(gw, c, c.sign(c, WRONG))
    assert status == 401, body
    refused = 2
    if c.sign is not basic_auth:  # a shared secret proves the sender, not the body: only signatures cover it
        # a correct signature for another body does not carry over (GET: for another query)
        tampered = Callback(c.method, c.query, c.body, c.headers, c.expect, c.subject)
        if c.method == "GET":
            tampered.query = {**c.query, "params.state": "streaming"}
        else:
            tampered.body = c.body.replace(b"-", b"_", 1)
        status, body = await send(gw, tampered, c.sign(c, Secrets()))
        assert status == 401, body
        refused += 1
    # Nothing reached NATS: a signed callback after the refusals is the first and only event.
    assert (await send(gw, c, c.sign(c, Secrets())))[0] == 200
    await gw.captured.wait_for(lambda: len(gw.captured.events) == 1)
    assert [m.subject for m in gw.captured.event_msgs] == [c.subject]
    assert gw.metric("sgw_status_callbacks_total", reason="unauthorized") == refused


async def test_a_replayed_telnyx_callback_is_refused(gw: RunningGateway) -> None:
    c = callbacks()["telnyx-json"]
    status, body = await send(gw, c, c.sign(c, Secrets(now=lambda: int(time.time()) - 3600)))
    assert status == 401 and "replay" in body["error"]
    assert gw.metric("sgw_status_callbacks_total", provider="telnyx", reason="unauthorized") == 1


@pytest.mark.parametrize(
    ("kind", "mutate", "reason"),
    [
        ("swml-json", lambda b: b.replace(b'"streaming"', b'"paused"'), "unknown state 'paused'"),
        ("swml-json", lambda b: b"[" + b + b"]", "JSON body must be an object"),
        ("telnyx-json", lambda b: b.replace(b'"data"', b'"data" "oops"'), "body is not valid JSON"),
        ("cxml-twilio", lambda b: b.replace(b"CallSid=CA0001&", b""), "CallSid missing"),
        ("plivo-form", lambda b: b.replace(b"StartStream", b"PausedStream"), "unknown Event"),
        ("bandwidth-json", lambda b: b.replace(b"mediaStreamStarted", b"mediaStreamPaused"), "unsupported eventType"),
    ],
)
async def test_malformed_callbacks_from_an_authenticated_sender_are_400_with_the_reason(
    gw: RunningGateway, kind: str, mutate: Callable[[bytes], bytes], reason: str
) -> None:
    c = callbacks()[kind]
    c.body = mutate(c.body)
    status, body = await send(gw, c, c.sign(c, Secrets()))
    assert status == 400 and reason in body["error"], body
    assert gw.metric("sgw_status_callbacks_total", reason="invalid") == 1
    assert gw.captured.events_of("status") == []


async def test_query_provider_names_the_parser(gw: RunningGateway) -> None:
    c = callbacks()["cxml-signalwire"]
    c.query = {"provider": "telnyx"}
    status, body = await send(gw, c, c.sign(c, Secrets()))
    assert status == 400 and "signed by signalwire" in body["error"]
    c.query = {"provider": "signalwire"}
    assert (await send(gw, c, c.sign(c, Secrets())))[0] == 200


async def test_nats_down_is_503_with_retry_after_and_the_retry_is_delivered(
    gw: RunningGateway, nats_server: EmbeddedNats
) -> None:
    ctx = gw.server.ctx
    assert ctx is not None
    c = callbacks()["cxml-twilio"]
    await nats_server.stop()
    await eventually(lambda: not ctx.health.nats_connected, 10, what="the gateway noticed NATS is gone")
    url = gw.ws_url.replace("ws://", "http://").replace("/stream", "/status")
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=c.body, headers={**c.headers, **c.sign(c, Secrets())}) as r,
    ):
        assert r.status == 503 and r.headers["Retry-After"] == "1"
    assert gw.metric("sgw_status_callbacks_total", provider="twilio", reason="unavailable") == 1
    await nats_server.start()
    await eventually(lambda: ctx.health.nats_connected and gw.nc.is_connected, 20, what="both reconnected")
    await subscription_live(gw.nc)
    assert (await send(gw, c, c.sign(c, Secrets())))[0] == 200  # the provider's retry
    await gw.captured.wait_for(lambda: len(gw.captured.events_of("status")) == 1)
    assert [m.subject for m in gw.captured.event_msgs] == ["events.CA0001"]

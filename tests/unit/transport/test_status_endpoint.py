"""The ``/status`` shell: dispatch to the providers' parsers, and the endpoint's answers (401, 400,
503, 200) on a real aiohttp server with the in-memory publisher (the NATS twin)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from gateway.observability.metrics import GatewayMetrics
from gateway.observability.tracing import StreamTracing, build_tracer_provider
from gateway.protocol.dialects.base import StatusError, StatusRequest, StatusUpdate
from gateway.publish.memory import MemoryPublisher
from gateway.routing.static import StaticRouteSource
from gateway.settings import load_settings
from gateway.transport.app import build_public_app
from gateway.transport.context import GatewayContext
from gateway.transport.status import dispatch, status_event
from sgw_routes.model import Route, RoutingTable, default_route
from tests.helpers import metric_sum

CXML = {
    "AccountSid": "AC1",
    "CallSid": "CA1",
    "StreamSid": "MZ1",
    "StreamName": "sales-1",
    "StreamEvent": "stream-started",
}
SWML = {
    "event_type": "calling.call.stream",
    "project_id": "p-1",
    "params": {"call_id": "call-9", "control_id": "sales-2", "state": "streaming", "node_id": "n"},
}


def form(fields: dict[str, str], **headers: str) -> StatusRequest:
    return StatusRequest(json=None, form=fields, headers=headers)


# -- dispatch -----------------------------------------------------------------------------------


def test_dispatch_asks_the_parsers_in_turn() -> None:
    update = dispatch(StatusRequest(json=SWML, form={}, headers={}), None, None)
    assert (update.provider, update.call_id) == ("signalwire", "call-9")
    assert dispatch(form(CXML), None, None).provider == "twilio"


def test_a_verified_signature_or_the_query_names_the_provider() -> None:
    assert dispatch(form(CXML), None, "signalwire").provider == "signalwire"  # the signature beats the MZ guess
    assert dispatch(form(CXML), "signalwire", None).provider == "signalwire"
    assert dispatch(form(CXML), "signalwire", "twilio").provider == "twilio"  # one parser: the signature wins
    with pytest.raises(StatusError, match=r"\?provider=telnyx, but the callback is signed by twilio"):
        dispatch(form(CXML), "telnyx", "twilio")
    with pytest.raises(StatusError, match="not a telnyx status callback"):
        dispatch(StatusRequest(json=SWML, form={}, headers={}), "telnyx", None)


@pytest.mark.parametrize(
    ("request_", "forced", "message"),
    [
        (form(CXML), "skype", "unknown provider 'skype'"),
        (form({"hello": "world"}), None, "not a status callback of a known provider"),
        (form({**CXML, "StreamEvent": "stream-paused"}), None, "unknown StreamEvent"),
        (StatusRequest(json={"event_type": "calling.call.play"}, form={}, headers={}), None, "unsupported event_type"),
    ],
)
def test_dispatch_refusals_say_why(request_: StatusRequest, forced: str | None, message: str) -> None:
    with pytest.raises(StatusError, match=message):
        dispatch(request_, forced, None)


def test_extras_never_replace_the_events_own_fields() -> None:
    update = StatusUpdate("twilio", "CA1", "MZ1", "k", "stream-error", extra={"error": "x", "call_id": "forged"})
    event = status_event(update, 12.5)
    assert event["call_id"] == "CA1" and event["error"] == "x" and event["ts"] == 12.5
    assert list(event)[:4] == ["type", "ts", "traceparent", "provider"]


# -- the endpoint -------------------------------------------------------------------------------

TOKEN = "tw-token"
SALES = Route(name="sales", control_id="sales-*", events_subject="calls.{control_id}.events", label="sales")


@dataclass
class Endpoint:
    http: aiohttp.ClientSession
    url: str
    publisher: MemoryPublisher
    registry: CollectorRegistry

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [(m.subject, json.loads(m.payload)) for m in self.publisher.messages]

    def counted(self, **labels: str) -> float:
        return metric_sum(self.registry, "sgw_status_callbacks_total", **labels)


@pytest.fixture
async def endpoint(tmp_path: Path) -> AsyncIterator[Endpoint]:
    token = tmp_path / "twilio"
    token.write_text(TOKEN)
    settings = load_settings(
        {"SGW_STATUS__TWILIO_AUTH_TOKEN_FILE": str(token), "SGW_STATUS__PUBLIC_BASE_URL": "https://gw.example.com/"},
        {"nats.url": "nats://unused:4222"},
    )
    registry = CollectorRegistry()
    publisher = MemoryPublisher()
    ctx = GatewayContext(
        settings=settings,
        metrics=GatewayMetrics(registry),
        publisher=publisher,
        routes=StaticRouteSource(RoutingTable(version=1, routes=(SALES,), default=default_route())),
        tracing=StreamTracing(build_tracer_provider(settings.observability), recording=False),
    )
    server = TestServer(build_public_app(ctx), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Endpoint(http, str(server.make_url("/status")), publisher, registry)
    finally:
        await server.close()


def signed(fields: dict[str, str], url: str = "https://gw.example.com/status") -> dict[str, str]:
    payload = url + "".join(k + v for k, v in sorted(fields.items()))
    return {
        "X-Twilio-Signature": base64.b64encode(hmac.new(TOKEN.encode(), payload.encode(), "sha1").digest()).decode()
    }


async def test_signed_callback_is_published_on_its_routes_events_subject(endpoint: Endpoint) -> None:
    async with endpoint.http.post(endpoint.url, data=CXML, headers=signed(CXML)) as r:
        assert (r.status, await r.json()) == (200, {"ok": True})
    [(subject, event)] = endpoint.events()
    assert subject == "calls.sales-1.events"
    assert event["type"] == "status" and event["provider"] == "twilio" and event["state"] == "stream-started"
    assert endpoint.counted(provider="twilio", reason="accepted") == 1


async def test_the_signature_covers_the_public_url_and_its_query(endpoint: Endpoint) -> None:
    fields = {"CallSid": "CA2", "StreamSid": "MZ2", "StreamEvent": "stream-stopped"}
    url = endpoint.url + "?" + "&".join(f"{k}={v}" for k, v in fields.items())
    good = signed({}, "https://gw.example.com/status?" + url.split("?")[1])
    async with endpoint.http.get(url, headers=good) as r:  # GET: the URL alone is signed
        assert r.status == 200
    async with endpoint.http.get(url, headers=signed({}, url)) as r:  # signed for another URL
        assert r.status == 401
    assert [s for s, _ in endpoint.events()] == ["events.CA2"]


async def test_refusals_publish_nothing(endpoint: Endpoint) -> None:
    async with endpoint.http.post(endpoint.url, data=CXML) as r:
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
        assert "no credential presented" in (await r.json())["error"]
    async with endpoint.http.post(
        endpoint.url, data={**CXML, "StreamEvent": "stream-error"}, headers=signed(CXML)
    ) as r:
        assert r.status == 401
        assert "X-Twilio-Signature does not verify" in (await r.json())["error"]
    bad = {**CXML, "StreamEvent": "stream-paused"}
    async with endpoint.http.post(endpoint.url, data=bad, headers=signed(bad)) as r:
        assert r.status == 400 and "unknown StreamEvent" in (await r.json())["error"]
    body = b"{nope"
    url = endpoint.url + "?bodySHA256=" + hashlib.sha256(body).hexdigest()
    headers = {**signed({}, "https://gw.example.com/status?" + url.split("?")[1]), "Content-Type": "application/json"}
    async with endpoint.http.post(url, data=body, headers=headers) as r:
        assert r.status == 400 and (await r.json())["error"] == "body is not valid JSON"
    assert endpoint.events() == []
    assert endpoint.counted(provider="twilio", reason="unauthorized") == 1  # the signature header names it
    assert endpoint.counted(provider="unknown", reason="unauthorized") == 1
    assert endpoint.counted(reason="invalid") == 2


async def test_nats_down_is_503_with_retry_after(endpoint: Endpoint) -> None:
    endpoint.publisher.set_ready(False)
    async with endpoint.http.post(endpoint.url, data=CXML, headers=signed(CXML)) as r:
        assert r.status == 503 and r.headers["Retry-After"] == "1"
    endpoint.publisher.set_ready(True)
    async with endpoint.http.post(endpoint.url, data=CXML, headers=signed(CXML)) as r:
        assert r.status == 200
    assert len(endpoint.events()) == 1
    assert endpoint.counted(provider="twilio", reason="unavailable") == 1

"""The operator's own API client against the emulated API server (and a 401 once)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import aiohttp.web
import kopf
import pytest

from sgw_operator.errors import KubeApiError
from sgw_operator.kube import HttpKubeApi, connection_info
from tests.integration.operator.harness import CRD
from tests.k8s.fixtures import K8s

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def api(k8s: K8s, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HttpKubeApi]:
    k8s.apply_crd(CRD)
    k8s.create_namespace("voice")
    monkeypatch.setenv("KUBECONFIG", str(k8s.kubeconfig))
    settings = kopf.OperatorSettings()
    client = HttpKubeApi(lambda: connection_info(settings, kubeconfig=str(k8s.kubeconfig)))
    yield client
    await client.close()


def test_connection_info_prefers_an_explicit_kubeconfig(k8s: K8s, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(k8s.kubeconfig))
    info = connection_info(kopf.OperatorSettings(), kubeconfig=str(k8s.kubeconfig))
    assert info.server == k8s.url
    assert info.default_namespace == "default"


async def test_secrets_status_events_and_listing(api: HttpKubeApi, k8s: K8s) -> None:
    assert await api.read_secret("voice", "nope") is None
    assert not await api.any_routes(["voice"])
    assert not await api.any_routes([])
    k8s.apply(
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tok", "namespace": "voice"}, "data": {"t": "eA=="}}
    )
    secret = await api.read_secret("voice", "tok")
    assert secret is not None
    assert secret["data"] == {"t": "eA=="}

    assert not await api.patch_route_status("voice", "missing", {"observedGeneration": 1})
    [route] = k8s.apply(
        {
            "apiVersion": "streamgateway.io/v1alpha1",
            "kind": "StreamRoute",
            "metadata": {"name": "a", "namespace": "voice"},
            "spec": {"match": {"controlId": "a-*"}},
        }
    )
    assert await api.any_routes(["voice"])
    assert await api.any_routes([])
    assert await api.patch_route_status("voice", "a", {"observedGeneration": 1, "table": {"version": 3}})
    stored = k8s.http("GET", "/apis/streamgateway.io/v1alpha1/namespaces/voice/streamroutes/a").body
    assert stored["status"] == {"observedGeneration": 1, "table": {"version": 3}}
    # A merge patch with null deletes the field, as the reconciler relies on.
    assert await api.patch_route_status("voice", "a", {"table": None})
    stored = k8s.http("GET", "/apis/streamgateway.io/v1alpha1/namespaces/voice/streamroutes/a").body
    assert "table" not in stored["status"]

    ref = {"namespace": "voice", "name": "a", "uid": route["metadata"]["uid"]}
    await api.post_event(ref, type_="Warning", reason="Conflicted", message="x" * 5000)
    events = k8s.http("GET", "/api/v1/namespaces/voice/events").body["items"]
    [event] = [e for e in events if e["involvedObject"]["name"] == "a"]
    assert (event["type"], event["reason"], event["involvedObject"]["kind"]) == ("Warning", "Conflicted", "StreamRoute")
    assert event["involvedObject"]["uid"] == route["metadata"]["uid"]
    assert len(event["message"]) == 1024

    described = k8s.run_kubectl("-n", "voice", "describe", "sr/a").stdout
    assert "Conflicted" in described


async def test_logs_in_again_once_after_a_401() -> None:
    calls: list[str | None] = []

    async def handler(request: aiohttp.web.Request) -> aiohttp.web.Response:
        calls.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != "Bearer fresh":
            return aiohttp.web.json_response({"message": "expired"}, status=401)
        return aiohttp.web.json_response({"message": "not found"}, status=404)

    app = aiohttp.web.Application()
    app.router.add_get("/api/v1/namespaces/voice/secrets/tok", handler)
    runner = aiohttp.web.AppRunner(app, access_log=None)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    tokens = iter(["stale", "fresh", "never"])
    client = HttpKubeApi(lambda: kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}", token=next(tokens)))
    try:
        assert await client.read_secret("voice", "tok") is None
        assert calls == ["Bearer stale", "Bearer fresh"]
    finally:
        await client.close()
        await runner.cleanup()


async def test_an_unreachable_api_is_a_kube_error() -> None:
    # A bound but never listening socket: connections to its port are refused.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        client = HttpKubeApi(lambda: kopf.ConnectionInfo(server=f"http://127.0.0.1:{port}"), timeout=2)
        try:
            with pytest.raises(KubeApiError) as info:
                await client.read_secret("voice", "tok")
            assert info.value.status == 0
        finally:
            await client.close()

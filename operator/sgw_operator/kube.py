"""The few Kubernetes API calls the operator makes outside kopf's per-object handling.

kopf patches an object only from that object's own handlers, but one StreamRoute change can
change OTHER routes' status (a conflict appears or goes away) and Secret changes concern routes
that had no event at all. So the reconciler reads referenced Secrets, patches ``/status`` of any
route and posts Events through this small aiohttp client. It authenticates exactly like kopf
(the operator's ``on.login`` handler returns the same :func:`connection_info`) and logs in again
once on a 401, which is how rotated service-account tokens are picked up.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol
from urllib.parse import quote

import aiohttp
import kopf

from sgw_operator.errors import KubeApiError

logger = logging.getLogger(__name__)

GROUP: Final = "streamgateway.io"
VERSION: Final = "v1alpha1"
PLURAL: Final = "streamroutes"
COMPONENT: Final = "sgw-operator"
_ROUTES: Final = f"/apis/{GROUP}/{VERSION}"


class KubeApi(Protocol):
    """What the reconciler needs from the API server (a fake implements it in unit tests)."""

    async def read_secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The Secret, or ``None`` if it does not exist."""

    async def patch_route_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        """Merge-patch ``/status``; ``False`` if the route no longer exists."""

    async def post_event(self, route: Mapping[str, str], *, type_: str, reason: str, message: str) -> None:
        """Post an Event about ``route`` (``namespace``, ``name``, ``uid``)."""

    async def any_routes(self, namespaces: Sequence[str]) -> bool:
        """Whether at least one StreamRoute exists in ``namespaces`` (empty: anywhere)."""


def connection_info(settings: kopf.OperatorSettings, *, kubeconfig: str | None) -> kopf.ConnectionInfo:
    """Credentials: an explicit ``KUBECONFIG`` first, then the pod's service account, then ~/.kube/config."""
    info = None
    if kubeconfig:
        info = kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no KUBECONFIG, no in-cluster service account and no ~/.kube/config")
    return info


class HttpKubeApi:
    def __init__(self, login: Callable[[], kopf.ConnectionInfo], *, timeout: float = 10.0) -> None:
        self._login = login
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._server = ""
        self._instance = socket.gethostname()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            info = self._login()
            headers = {**info.as_http_headers(), "User-Agent": f"{COMPONENT}/kopf"}
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=info.as_ssl_context()),
                headers=headers,
                timeout=self._timeout,
            )
            self._server = info.server.rstrip("/")
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _request(
        self, method: str, path: str, *, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        for attempt in range(2):
            session = self._open()
            headers = {"Content-Type": content_type} if body is not None else {}
            try:
                async with session.request(method, self._server + path, json=body, headers=headers) as response:
                    if response.status == 401 and attempt == 0:
                        await self.close()  # stale token: log in again, once
                        continue
                    payload = await response.json(content_type=None) if response.content_length != 0 else None
                    return response.status, payload
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise KubeApiError(0, f"{method} {path}: {type(exc).__name__}: {exc}") from None
        raise KubeApiError(401, f"{method} {path}: unauthorized")

    @staticmethod
    def _fail(status: int, payload: Any, what: str) -> KubeApiError:
        message = payload.get("message") if isinstance(payload, Mapping) else None
        return KubeApiError(status, f"{what}: {message or 'no details'}")

    async def read_secret(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        path = f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"
        status, payload = await self._request("GET", path)
        if status == 404:
            return None
        if status != 200 or not isinstance(payload, Mapping):
            raise self._fail(status, payload, f"reading Secret {namespace}/{name}")
        return payload

    async def patch_route_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> bool:
        path = f"{_ROUTES}/namespaces/{quote(namespace)}/{PLURAL}/{quote(name)}/status"
        code, payload = await self._request(
            "PATCH", path, body={"status": dict(status)}, content_type="application/merge-patch+json"
        )
        if code == 404:
            return False
        if code != 200:
            raise self._fail(code, payload, f"patching status of StreamRoute {namespace}/{name}")
        return True

    async def post_event(self, route: Mapping[str, str], *, type_: str, reason: str, message: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        namespace = route["namespace"]
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"namespace": namespace, "generateName": f"{route['name']}."},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "StreamRoute",
                "namespace": namespace,
                "name": route["name"],
                "uid": route.get("uid", ""),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        status, payload = await self._request("POST", f"/api/v1/namespaces/{quote(namespace)}/events", body=event)
        if status not in (200, 201):
            raise self._fail(status, payload, f"posting an Event on StreamRoute {namespace}/{route['name']}")

    async def any_routes(self, namespaces: Sequence[str]) -> bool:
        paths = [f"{_ROUTES}/namespaces/{quote(ns)}/{PLURAL}?limit=1" for ns in namespaces] or [
            f"{_ROUTES}/{PLURAL}?limit=1"
        ]
        for path in paths:
            status, payload = await self._request("GET", path)
            if status != 200 or not isinstance(payload, Mapping):
                raise self._fail(status, payload, "listing StreamRoutes")
            if payload.get("items"):
                return True
        return False

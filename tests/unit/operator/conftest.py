"""Builders for StreamRoute objects and Secrets as the API server returns them."""

from __future__ import annotations

import base64
from typing import Any

from sgw_operator.model import RouteSnapshot, snapshot


def route_obj(
    name: str,
    spec: dict[str, Any] | None = None,
    *,
    ns: str = "voice",
    created: str = "2026-01-01T00:00:00Z",
    generation: int = 1,
    uid: str | None = None,
    status: dict[str, Any] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": ns,
        "uid": uid or f"uid-{ns}-{name}",
        "creationTimestamp": created,
        "generation": generation,
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-02T00:00:00Z"
    obj: dict[str, Any] = {
        "apiVersion": "streamgateway.io/v1alpha1",
        "kind": "StreamRoute",
        "metadata": meta,
        "spec": spec if spec is not None else {},
    }
    if status is not None:
        obj["status"] = status
    return obj


def snap(name: str, spec: dict[str, Any] | None = None, **kwargs: Any) -> RouteSnapshot:
    return snapshot(route_obj(name, spec, **kwargs))


def secret_obj(name: str, data: dict[str, bytes], *, ns: str = "voice") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def with_secret(ref: str, key: str = "token", **spec: Any) -> dict[str, Any]:
    return {**spec, "auth": {"bearerTokenSecretRef": {"name": ref, "key": key}}}


def with_basic(ref: str, **spec: Any) -> dict[str, Any]:
    return {**spec, "auth": {"basicAuthSecretRef": {"name": ref}}}


def with_twilio(ref: str, key: str = "token", **spec: Any) -> dict[str, Any]:
    return {**spec, "auth": {"twilioSignature": {"authTokenSecretRef": {"name": ref, "key": key}}}}

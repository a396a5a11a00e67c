"""Canaries: raw kmock 0.8 still has the gaps `RealisticKubernetesEmulator` closes.

`tests.k8s.emulator` leans on kmock's private internals and overrides its behaviour wholesale.
If one of these tests fails after a kmock upgrade, kmock changed (perhaps fixed the gap): re-read
`tests/k8s/emulator.py` against the new kmock before trusting the emulator again. Numbers refer
to the gap list in tests/k8s/GAPS.md.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import kmock
import pytest

KEXES = "/apis/kopf.dev/v1/namespaces/ns/kexes"


@pytest.fixture
async def raw() -> AsyncIterator[tuple[kmock.KubernetesEmulator, aiohttp.ClientSession]]:
    async with kmock.KubernetesEmulator() as emulator, kmock.Server(emulator) as server:
        yield emulator, server.client


async def call(client: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with client.request(method, path, **kwargs) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


def test_kmock_is_the_pinned_version() -> None:
    version = importlib.metadata.version("kmock")
    assert version.startswith("0.8"), "kmock changed: re-check tests/k8s/emulator.py"


async def test_gap_1_and_2_namespaces_list_fails_and_core_group_version_is_wrong(raw: Any) -> None:
    _, client = raw
    status, _ = await call(client, "GET", "/api/v1/namespaces")
    assert status == 500
    status, body = await call(client, "GET", "/api/v1")
    assert body["groupVersion"] == "/v1"


async def test_gap_3_and_14_no_server_metadata_and_lists_without_kind(raw: Any) -> None:
    _, client = raw
    status, created = await call(client, "POST", KEXES, json={"metadata": {"name": "a"}})
    assert status == 200
    assert "uid" not in created["metadata"]
    assert "resourceVersion" not in created["metadata"]
    _, listed = await call(client, "GET", KEXES)
    assert "kind" not in listed
    assert listed["metadata"]["resourceVersion"] == "..."


async def test_gap_4_failed_json_patch_test_is_a_500(raw: Any) -> None:
    _, client = raw
    await call(client, "POST", KEXES, json={"metadata": {"name": "a"}, "spec": {"x": 1}})
    status, _ = await call(
        client,
        "PATCH",
        f"{KEXES}/a",
        data=json.dumps([{"op": "test", "path": "/spec/x", "value": 2}]),
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert status == 500


async def test_gap_6_and_8_status_split_missing_and_put_unsupported(raw: Any) -> None:
    _, client = raw
    await call(client, "POST", KEXES, json={"metadata": {"name": "a"}, "spec": {"x": 1}})
    await call(client, "PATCH", f"{KEXES}/a/status", json={"spec": {"x": 5}})
    _, fetched = await call(client, "GET", f"{KEXES}/a")
    assert fetched["spec"]["x"] == 5
    status, _ = await call(client, "PUT", f"{KEXES}/a", json={"metadata": {"name": "a"}})
    assert status == 404


async def test_gap_11_generate_name_is_ignored(raw: Any) -> None:
    _, client = raw
    _, created = await call(client, "POST", "/api/v1/namespaces/ns/events", json={"metadata": {"generateName": "e-"}})
    assert "name" not in created["metadata"]


async def test_gap_13_and_16_no_openapi_and_an_old_version(raw: Any) -> None:
    _, client = raw
    status, _ = await call(client, "GET", "/openapi/v3")
    assert status == 404
    _, version = await call(client, "GET", "/version")
    assert version["gitVersion"] == "v1.26.4+k3s1"


async def test_gap_17_injected_errors_still_mutate(raw: Any) -> None:
    emulator, client = raw
    emulator["post", kmock.resource("kopf.dev", "v1", "kexes")] << 409  # noqa: B015
    status, _ = await call(client, "POST", KEXES, json={"metadata": {"name": "a"}})
    assert status == 409
    assert emulator.objects["kopf.dev/v1/kexes", "ns", "a"] == {"metadata": {"name": "a"}}

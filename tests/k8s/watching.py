"""Reads of the emulated API: GET (JSON, Table, PartialObjectMetadata), lists and watches.

A list's `metadata.resourceVersion` is the store's current revision; a watch from it replays
exactly the later changes of that resource from the log (410 Gone as an ERROR event if they
were compacted). Watches honour label/field selectors (an object that stops matching is
reported as DELETED, as the watch cache does), `sendInitialEvents` with the
`k8s.io/initial-events-end` BOOKMARK, periodic BOOKMARKs when `allowWatchBookmarks=true`, and
`timeoutSeconds`, and Table output (`kubectl get -w`). Built-in list items carry no
kind/apiVersion, as on a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp.web

from tests.k8s import errors, selectors, tables
from tests.k8s.registry import ResourceSpec
from tests.k8s.store import Change

if TYPE_CHECKING:
    from tests.k8s.emulator import RealisticKubernetesEmulator

TABLE_CONTENT_TYPE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def matcher(
    spec: ResourceSpec, namespace: str | None, labels: str | None, fields: str | None
) -> Callable[[dict[str, Any]], bool]:
    allowed = {"metadata.name", "metadata.namespace", *(spec.selectable_fields or [])} if spec.custom else None
    by_labels = selectors.label_selector(labels)
    by_fields = selectors.field_selector(fields, allowed)

    def check(obj: dict[str, Any]) -> bool:
        if namespace is not None and obj["metadata"].get("namespace") != namespace:
            return False
        return by_labels(obj) and by_fields(obj)

    return check


def _json(payload: Any, content_type: str = "application/json") -> aiohttp.web.Response:
    response = aiohttp.web.Response(body=json.dumps(payload).encode())
    response.headers["Content-Type"] = content_type
    return response


def _columns(spec: ResourceSpec) -> list[dict[str, Any]]:
    return spec.printer_columns or tables.DEFAULT_COLUMNS


def _partial(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }


def serve_list(
    emulator: RealisticKubernetesEmulator,
    raw: aiohttp.web.BaseRequest,
    spec: ResourceSpec,
    namespace: str | None,
    *,
    name: str | None = None,
) -> aiohttp.web.StreamResponse:
    accept = raw.headers.get("Accept", "")
    rv = str(emulator.store.current_rv)
    include = raw.query.get("includeObject", "Metadata")
    if name is not None:
        obj = emulator.api.read(spec, namespace, name)
        if "as=Table" in accept:
            table = tables.build_table([obj], _columns(spec), resource_version=rv, include_object=include)
            return _json(table, TABLE_CONTENT_TYPE)
        if "as=PartialObjectMetadata" in accept:
            return _json(_partial(obj))
        return _json(obj)
    matches = matcher(spec, namespace, raw.query.get("labelSelector"), raw.query.get("fieldSelector"))
    items = [emulator.api.present(spec, obj) for obj in emulator.store.items(spec.storage, namespace) if matches(obj)]
    if "as=Table" in accept:
        table = tables.build_table(items, _columns(spec), resource_version=rv, include_object=include)
        return _json(table, TABLE_CONTENT_TYPE)
    if "as=PartialObjectMetadataList" in accept:
        return _json(
            {
                "kind": "PartialObjectMetadataList",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": rv},
                "items": [_partial(obj) for obj in items],
            }
        )
    if not spec.custom:
        for item in items:
            item.pop("apiVersion", None)
            item.pop("kind", None)
    return _json(
        {
            "kind": f"{spec.kind}List",
            "apiVersion": spec.api_version,
            "metadata": {"resourceVersion": rv},
            "items": items,
        }
    )


def _transition(change: Change, matches: Callable[[dict[str, Any]], bool]) -> str | None:
    """The event type this watcher sees, given what matched before and after the change."""
    now = matches(change.obj)
    before = change.old is not None and matches(change.old)
    if change.type == "DELETED":
        return "DELETED" if before or now else None
    if change.type == "ADDED":
        return "ADDED" if now else None
    if now and before:
        return "MODIFIED"
    if now:
        return "ADDED"
    return "DELETED" if before else None


def _bookmark(spec: ResourceSpec, rv: int, *, initial_end: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {
        "type": "BOOKMARK",
        "object": {"kind": spec.kind, "apiVersion": spec.api_version, "metadata": meta},
    }


def _expired(requested: int, emulator: RealisticKubernetesEmulator) -> dict[str, Any]:
    emulator.expired_watches += 1
    error = errors.gone(f"too old resource version: {requested} ({emulator.store.current_rv})")
    return {"type": "ERROR", "object": error.status()}


async def serve_watch(
    emulator: RealisticKubernetesEmulator,
    raw: aiohttp.web.BaseRequest,
    spec: ResourceSpec,
    namespace: str | None,
    name: str | None,
) -> aiohttp.web.StreamResponse:
    params = raw.query
    fields = params.get("fieldSelector")
    if name is not None:
        fields = ",".join(filter(None, [fields, f"metadata.name={name}"]))
    matches = matcher(spec, namespace, params.get("labelSelector"), fields)
    initial = params.get("sendInitialEvents") == "true"
    if initial and params.get("resourceVersionMatch") != "NotOlderThan":
        raise errors.unprocessable(
            "sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan"
        )
    since = params.get("resourceVersion") or ""
    try:
        start = int(since) if since not in ("", "0") and not initial else None
        timeout = float(params["timeoutSeconds"]) if "timeoutSeconds" in params else None
    except ValueError as exc:
        raise errors.bad_request(f"invalid watch parameter: {exc}") from exc
    bookmarks = params.get("allowWatchBookmarks") == "true"

    response = aiohttp.web.StreamResponse()
    response.headers["Content-Type"] = "application/json"
    response.enable_chunked_encoding()
    await response.prepare(raw)
    store = emulator.store

    as_table = "as=Table" in raw.headers.get("Accept", "")
    include = params.get("includeObject", "Metadata")
    sent_columns = False

    async def send(event: dict[str, Any]) -> None:
        nonlocal sent_columns
        if as_table and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
            obj = event["object"]
            rv = obj["metadata"].get("resourceVersion", "")
            table = tables.build_table([obj], _columns(spec), resource_version=rv, include_object=include)
            if sent_columns:  # like the API server: column definitions only in the first event
                table["columnDefinitions"] = []
            sent_columns = True
            event = {"type": event["type"], "object": table}
        await response.write(json.dumps(event).encode() + b"\n")

    try:
        if start is not None and store.too_old(start):
            await send(_expired(start, emulator))
            return response
        position = start if start is not None else store.current_rv
        if start is None:
            for obj in store.items(spec.storage, namespace):
                if matches(obj):
                    await send({"type": "ADDED", "object": emulator.api.present(spec, obj)})
            if initial:
                await send(_bookmark(spec, position, initial_end=True))
        await _follow(
            emulator,
            spec=spec,
            matches=matches,
            position=position,
            send=send,
            timeout=timeout,
            bookmarks=bookmarks,
        )
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away: nobody is left to tell
    return response


async def _follow(
    emulator: RealisticKubernetesEmulator,
    *,
    spec: ResourceSpec,
    matches: Callable[[dict[str, Any]], bool],
    position: int,
    send: Callable[[dict[str, Any]], Any],
    timeout: float | None,
    bookmarks: bool,
) -> None:
    store = emulator.store
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout if timeout is not None else None
    next_bookmark = loop.time() + emulator.bookmark_interval
    while not emulator.stopping:
        waiter = store.waiter()
        if store.too_old(position):
            await send(_expired(position, emulator))
            return
        for change in store.changes_after(position):
            position = change.rv
            if change.storage != spec.storage:
                continue
            kind = _transition(change, matches)
            if kind is not None:
                await send({"type": kind, "object": emulator.api.present(spec, change.obj)})
        now = loop.time()
        if deadline is not None and now >= deadline:
            return
        if bookmarks and now >= next_bookmark:
            await send(_bookmark(spec, position))
            next_bookmark = now + emulator.bookmark_interval
        limits = [t - now for t in (deadline, next_bookmark if bookmarks else None) if t is not None]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), min(limits) if limits else None)

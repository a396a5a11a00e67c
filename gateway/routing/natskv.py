"""Routes from the NATS KV bucket the operator writes: watched, swapped atomically.

The operator stores the compiled table (``sgw_routes.model.encode_table``) under one key. Start-up
waits (bounded by ``routing.initial_table_timeout``) for the bucket's current value, so a pod
started after the operator serves with the current table from its first request. Without a bucket
the gateway still starts, but stays unready (and refuses upgrades with 503) until a table arrives,
and its log says what to do: install the operator or apply a StreamRoute. Every later
revision replaces the table whole; a value that does not decode is counted and ignored (the old
table stays). A deleted key means "no routes". The ordered-consumer watch of nats-py survives
reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Final

import msgspec
from nats.aio.client import Client
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from gateway.routing.source import BaseSource
from sgw_routes.model import RoutingTable, decode_table, default_route

logger = logging.getLogger(__name__)

_HINT_EVERY: Final = 60.0


class NatsKvRouteSource(BaseSource):
    def __init__(
        self,
        client: Client,
        *,
        bucket: str,
        key: str,
        default: bool,
        initial_timeout: float,
        retry_interval: float = 1.0,
    ) -> None:
        super().__init__()
        self._nc = client
        self._bucket = bucket
        self._key = key
        self._default = default_route() if default else None
        self._initial_timeout = initial_timeout
        self._retry = retry_interval
        self._first = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.invalid_updates = 0
        self._last_hint = -_HINT_EVERY

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="routes-kv-watch")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), self._initial_timeout)
        if not self._first.is_set():
            logger.warning(
                "no route table from KV bucket %r after %gs: serving unready (upgrades get 503) until one arrives",
                self._bucket,
                self._initial_timeout,
            )

    def _hint(self, message: str, *args: object) -> None:
        """Say what to do, at WARNING, at most once a minute (the retry loop runs every second)."""
        now = time.monotonic()
        if now - self._last_hint >= _HINT_EVERY:
            self._last_hint = now
            logger.warning(message, *args)

    async def _bucket_kv(self) -> KeyValue:
        js = self._nc.jetstream()
        while True:
            try:
                return await js.key_value(self._bucket)
            except BucketNotFoundError:
                self._hint(
                    "KV bucket %r does not exist, so this gateway has no routes and stays unready. "
                    "Install the operator (helm install ... charts/stream-gateway) and apply a StreamRoute "
                    "(kubectl apply -f streamroute.yaml), or run without --route-source natskv to serve a "
                    "routes file (--routes FILE) or the default route",
                    self._bucket,
                )
            except Exception as exc:  # noqa: BLE001 - any JetStream failure: retry, the watch is vital
                self._hint("KV bucket %r not reachable (retrying every %gs): %s", self._bucket, self._retry, exc)
            await asyncio.sleep(self._retry)

    async def _run(self) -> None:
        while True:
            kv = await self._bucket_kv()
            try:
                watcher = await kv.watch(self._key)
                async for entry in watcher:
                    if entry is None:  # initial values delivered; no value exists yet
                        if not self._has_table:
                            self._apply(RoutingTable(version=0, default=self._default))
                        continue
                    if entry.operation in (KV_DEL, KV_PURGE):
                        self._apply(RoutingTable(version=entry.revision, default=self._default))
                        continue
                    self._apply_bytes(entry.value or b"")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - re-establish the watch after any failure
                logger.warning("route table watch failed, restarting: %s", exc)
                await asyncio.sleep(self._retry)

    def _apply_bytes(self, data: bytes) -> None:
        try:
            table = decode_table(data)
        except msgspec.DecodeError as exc:
            self.invalid_updates += 1
            self._reject(f"undecodable table: {exc}")
            logger.error("ignoring an undecodable route table from KV (previous table stays): %s", exc)
            return
        if self._default is not None and table.default is None:
            table = msgspec.structs.replace(table, default=self._default)
        self._apply(table)

    def _apply(self, table: RoutingTable) -> None:
        self._swap(table)
        self._first.set()
        logger.info("route table version %d applied: %d routes", table.version, len(table.routes))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

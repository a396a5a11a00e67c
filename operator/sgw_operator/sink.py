"""Where the compiled route table goes: the NATS JetStream KV bucket every gateway watches.

One key (default ``table`` in bucket ``sgw-routes``) holds ``sgw_routes.model.encode_table`` of
the whole table. On :meth:`NatsKvSink.open` the sink creates the bucket if missing and reads the
current value, so after a restart the operator knows what is live, republishes only if its
recomputed table differs, and numbers new tables above everything seen: ``version`` =
max(stored version, the bucket's last sequence) + 1, strictly increasing across restarts. Writes
are compare-and-set on the key's revision, so a second operator (e.g. during a rollout) cannot
silently overwrite a newer table. :class:`MemoryTableSink` is the in-memory twin for tests.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Protocol

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError, BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from sgw_operator.errors import SinkUnavailable
from sgw_operator.settings import KvSettings, NatsSettings
from sgw_routes.model import RoutingTable, decode_table, encode_table

logger = logging.getLogger(__name__)

_NATS_ERRORS = (nats.errors.Error, TimeoutError, OSError)


class TableSink(Protocol):
    """Where the reconciler publishes tables. ``published`` is what is live (``None``: unknown)."""

    @property
    def is_open(self) -> bool: ...

    @property
    def published(self) -> RoutingTable | None: ...

    async def open(self) -> None:
        """Connect and read the live table; raise :class:`SinkUnavailable` on failure."""

    async def publish(self, table: RoutingTable) -> RoutingTable:
        """Write ``table`` under the next version; return it as written."""

    async def close(self) -> None: ...


class NatsKvSink:
    def __init__(self, nats_settings: NatsSettings, kv_settings: KvSettings) -> None:
        self._nats = nats_settings
        self._kv_settings = kv_settings
        self._nc: Client | None = None
        self._kv: KeyValue | None = None
        self._revision = 0
        self._floor = 0
        self._published: RoutingTable | None = None
        self._closing = False

    @property
    def is_open(self) -> bool:
        return self._kv is not None

    @property
    def published(self) -> RoutingTable | None:
        return self._published

    def jetstream(self) -> JetStreamContext | None:
        """JetStream on this sink's connection (the durable routes' streams), while open."""
        return self._nc.jetstream(timeout=self._nats.connect_timeout) if self._nc is not None else None

    async def open(self) -> None:
        if self._kv is not None:
            return
        nc = await self._connect()
        try:
            kv = await self._bucket(nc.jetstream(timeout=self._nats.connect_timeout))
            await self._read(kv)
        except _NATS_ERRORS as exc:
            await nc.close()
            raise SinkUnavailable(f"KV bucket {self._kv_settings.bucket!r}: {type(exc).__name__}: {exc}") from None
        self._nc, self._kv = nc, kv
        logger.info(
            "route table KV %s/%s opened: live version %s, next version > %d",
            self._kv_settings.bucket,
            self._kv_settings.key,
            self._published.version if self._published is not None else "none",
            self._floor,
        )

    async def _connect(self) -> Client:
        cfg = self._nats
        options: dict[str, Any] = {
            "servers": [u.strip() for u in cfg.url.split(",") if u.strip()],
            "name": cfg.name,
            "connect_timeout": cfg.connect_timeout,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": 1,
            "error_cb": self._on_error,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }
        if cfg.user is not None:
            options["user"], options["password"] = cfg.user, cfg.password or ""
        if cfg.token is not None:
            options["token"] = cfg.token
        if cfg.creds_file is not None:
            options["user_credentials"] = str(cfg.creds_file)
        if cfg.tls_ca_file is not None or cfg.tls_cert_file is not None:
            tls = ssl.create_default_context(cafile=str(cfg.tls_ca_file) if cfg.tls_ca_file else None)
            if cfg.tls_cert_file is not None and cfg.tls_key_file is not None:
                tls.load_cert_chain(str(cfg.tls_cert_file), str(cfg.tls_key_file))
            options["tls"] = tls
        nc = Client()
        try:
            # With unlimited reconnects nats-py retries the *first* connection forever too; bound
            # it so the reconciler can report PublishFailed and back off instead of hanging.
            await asyncio.wait_for(nc.connect(**options), timeout=2 * cfg.connect_timeout)
        except (*_NATS_ERRORS, asyncio.CancelledError) as exc:
            await nc.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            # nats-py errors name the server, never the credentials.
            raise SinkUnavailable(f"cannot connect to NATS: {type(exc).__name__}: {exc}") from None
        return nc

    async def _bucket(self, js: JetStreamContext) -> KeyValue:
        cfg = self._kv_settings
        try:
            return await js.key_value(cfg.bucket)
        except BucketNotFoundError:
            pass
        try:
            logger.info("creating KV bucket %r (history %d)", cfg.bucket, cfg.history)
            return await js.create_key_value(
                bucket=cfg.bucket, history=cfg.history, description="stream-gateway route table (sgw-operator)"
            )
        except BadRequestError:
            # Another writer created it between our lookup and create: use theirs.
            return await js.key_value(cfg.bucket)

    async def _read(self, kv: KeyValue) -> None:
        table: RoutingTable | None = None
        revision = 0
        try:
            entry = await kv.get(self._kv_settings.key)
            revision = entry.revision or 0
            table = decode_table(entry.value or b"")
        except KeyNotFoundError as exc:
            # A deleted key still has a revision (its tombstone), which a compare-and-set must name.
            revision = int(getattr(exc.entry, "revision", 0) or 0)
        except msgspec.DecodeError:
            logger.warning("the live route table in KV does not decode; it will be replaced")
        status = await kv.status()
        last_seq = int(status.stream_info.state.last_seq or 0)
        self._revision = revision
        self._published = table
        self._floor = max(table.version if table is not None else 0, last_seq, self._floor)

    async def publish(self, table: RoutingTable) -> RoutingTable:
        kv = self._kv
        if kv is None:
            raise SinkUnavailable("not connected to NATS")
        for _ in range(2):
            versioned = msgspec.structs.replace(table, version=self._floor + 1)
            try:
                revision = await kv.update(self._kv_settings.key, encode_table(versioned), last=self._revision)
            except KeyWrongLastSequenceError:
                # Someone else wrote the key: learn their version so ours stays above it, retry once.
                logger.warning("route table key changed under the operator; re-reading it")
                try:
                    await self._read(kv)
                except _NATS_ERRORS as exc:
                    raise SinkUnavailable(f"re-reading the route table failed: {exc}") from None
                continue
            except _NATS_ERRORS as exc:
                raise SinkUnavailable(f"writing the route table failed: {type(exc).__name__}: {exc}") from None
            self._revision = revision
            self._floor = versioned.version
            self._published = versioned
            return versioned
        raise SinkUnavailable("the route table key keeps changing under the operator (a second operator?)")

    async def close(self) -> None:
        nc, self._nc, self._kv = self._nc, None, None
        self._closing = True
        if nc is not None:
            try:
                await nc.drain()
            except _NATS_ERRORS as exc:
                logger.debug("NATS drain at shutdown: %s", exc)
                await nc.close()

    async def _on_error(self, exc: Exception) -> None:
        logger.debug("NATS: %s: %s", type(exc).__name__, exc)

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        logger.warning("disconnected from NATS; the route table cannot be updated until it is back")

    async def _on_reconnected(self) -> None:
        logger.info("reconnected to NATS")


class MemoryTableSink:
    """The in-memory twin: same versioning, plus ``fail`` to simulate an unreachable NATS."""

    def __init__(self, initial: RoutingTable | None = None) -> None:
        self._published = initial
        self._opened = False
        self.fail = False
        self.history: list[RoutingTable] = []

    @property
    def is_open(self) -> bool:
        return self._opened

    @property
    def published(self) -> RoutingTable | None:
        return self._published

    async def open(self) -> None:
        if self.fail:
            raise SinkUnavailable("memory sink set to fail")
        self._opened = True

    async def publish(self, table: RoutingTable) -> RoutingTable:
        if self.fail or not self._opened:
            raise SinkUnavailable("memory sink set to fail")
        version = (self._published.version if self._published is not None else 0) + 1
        self._published = msgspec.structs.replace(table, version=version)
        self.history.append(self._published)
        return self._published

    async def close(self) -> None:
        self._opened = False

"""The process's one NATS connection: options from settings, state callbacks, readiness.

Built once at start-up and shared by the publisher, the route-table watcher and the playback
subscriptions. nats-py reconnects on its own (forever, ``reconnect_wait`` apart); listeners hear
``connected``/``disconnected``/``reconnected``/``closed`` so readiness and metrics follow.
Credentials are passed to nats-py and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from typing import Any

import nats
from nats.aio.client import Client

from gateway.errors import ConfigError
from gateway.settings import NatsSettings

logger = logging.getLogger(__name__)

StateListener = Callable[[str], None]


def _tls_context(cfg: NatsSettings) -> ssl.SSLContext | None:
    if not (cfg.tls_ca_file or cfg.tls_cert_file or cfg.tls_key_file):
        return None
    ctx = ssl.create_default_context(cafile=str(cfg.tls_ca_file) if cfg.tls_ca_file else None)
    if cfg.tls_cert_file is not None:
        ctx.load_cert_chain(str(cfg.tls_cert_file), str(cfg.tls_key_file) if cfg.tls_key_file else None)
    return ctx


class NatsConnection:
    """Owns the nats-py client and fans its state changes out to listeners."""

    def __init__(self, cfg: NatsSettings, url: str) -> None:
        self._cfg = cfg
        self._url = url
        self.client = Client()
        self._listeners: list[StateListener] = []
        self._ready = asyncio.Event()
        self.reconnects = 0
        self._attempted = False

    def add_listener(self, listener: StateListener) -> None:
        self._listeners.append(listener)

    def _emit(self, state: str) -> None:
        for listener in self._listeners:
            listener(state)

    @property
    def ready(self) -> asyncio.Event:
        return self._ready

    def is_connected(self) -> bool:
        return self.client.is_connected

    async def connect(self) -> None:
        cfg = self._cfg
        options: dict[str, Any] = {
            "servers": [u.strip() for u in self._url.split(",") if u.strip()],
            "name": cfg.name,
            "connect_timeout": cfg.connect_timeout,
            "reconnect_time_wait": cfg.reconnect_wait,
            "max_reconnect_attempts": -1,
            "allow_reconnect": True,
            "ping_interval": cfg.ping_interval,
            "max_outstanding_pings": 2,
            "pending_size": cfg.pending_bytes,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "closed_cb": self._on_closed,
            "error_cb": self._on_error,
        }
        if cfg.user is not None:
            options["user"] = cfg.user
            options["password"] = cfg.password or ""
        if cfg.token is not None:
            options["token"] = cfg.token
        if cfg.creds_file is not None:
            options["user_credentials"] = str(cfg.creds_file)
        if cfg.nkey_seed_file is not None:
            options["nkeys_seed"] = str(cfg.nkey_seed_file)
        tls = _tls_context(cfg)
        if tls is not None:
            options["tls"] = tls
        self._attempted = True
        try:
            # nats-py retries the first connection for ever when reconnects are unlimited.
            await asyncio.wait_for(self.client.connect(**options), cfg.initial_connect_timeout)
        except TimeoutError:
            last = self.client.last_error
            raise ConfigError(
                "SGW_NATS__URL",
                f"no NATS connection within {cfg.initial_connect_timeout:g}s "
                f"(last error: {type(last).__name__}: {last})",
            ) from None
        except Exception as exc:
            # No credentials in the message: nats-py errors name the server, not the secret.
            raise ConfigError("SGW_NATS__URL", f"cannot connect to NATS: {type(exc).__name__}: {exc}") from None
        self._ready.set()
        self._emit("connected")

    async def _on_disconnected(self) -> None:
        self._ready.clear()
        self._emit("disconnected")

    async def _on_reconnected(self) -> None:
        self.reconnects += 1
        self._ready.set()
        self._emit("reconnected")

    async def _on_closed(self) -> None:
        self._ready.clear()
        self._emit("closed")

    async def _on_error(self, exc: Exception) -> None:
        logger.warning("NATS connection error: %s: %s", type(exc).__name__, exc)

    async def abandon(self) -> None:
        """Give up on this server (it stopped confirming) and reconnect to another one.

        The socket is aborted first: nats-py's reconnect closes the old transport and waits until
        it is closed, and a transport with unsent data to a frozen server never finishes closing,
        so the reconnect would hang behind it. The abort reaches into nats-py's transport
        (``Client._transport._io_writer``; nats-py 2.x, pinned <3); ``force_reconnect`` is public.
        """
        self._ready.clear()
        self._emit("stale")
        client: Any = self.client
        writer = getattr(getattr(client, "_transport", None), "_io_writer", None)
        if writer is not None:
            writer.transport.abort()
        await self.client.force_reconnect()

    def discard_unsent_publishes(self) -> int:
        """Drop PUB/HPUB commands nats-py kept from a broken connection.

        nats-py would replay them after reconnecting, but the publisher has already given those
        messages back to their streams to send again in order; replaying both would duplicate and
        reorder audio. This touches nats-py's private ``_pending`` list (nats-py 2.x, pinned <3).
        """
        client: Any = self.client
        pending: list[bytes] = getattr(client, "_pending", [])
        kept = [cmd for cmd in pending if not (cmd.startswith((b"PUB ", b"HPUB ")))]
        dropped = len(pending) - len(kept)
        if dropped:
            client._pending = kept
            client._pending_data_size = sum(len(c) for c in kept)
        return dropped

    async def close(self, timeout: float) -> None:
        """Drain (flush publishes, unsubscribe) within ``timeout``, then close."""
        if not self._attempted or self.client.is_closed:
            return  # start-up failed before connecting: nats-py cannot close a client it never set up
        try:
            if self.client.is_connected:
                await asyncio.wait_for(self.client.drain(), timeout)
        except (TimeoutError, nats.errors.Error) as exc:
            logger.warning("NATS drain did not complete: %s", type(exc).__name__)
        finally:
            if not self.client.is_closed:
                await self.client.close()

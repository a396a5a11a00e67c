"""Publishing to NATS with delivery confirmation, so an outage loses only what is counted.

Core NATS has no acknowledgements: a message written into a socket that then breaks is gone
without a trace. So every handed-over message stays in a process-wide in-flight list until a
PING/PONG round trip that started after it completes (the server has then processed it). One
confirmer task does that for all streams, so the cost is one round trip per batch, not per frame.
When the connection drops, every unconfirmed message is given back to its stream (``on_lost``),
which sends it again after the reconnect. Consumers may therefore, rarely, see a frame twice after
an outage; ``Sgw-Seq`` identifies it.

JetStream routes publish with acknowledgement (``Nats-Msg-Id`` lets the stream de-duplicate a
retried frame).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg

from gateway.errors import PublishRejected, PublishUnavailable
from gateway.publish.base import LostCallback, MessageHandler, Unsubscribe
from gateway.publish.connection import NatsConnection

logger = logging.getLogger(__name__)

_NOT_READY_BACKOFF = 0.02


class NatsPublisher:
    def __init__(self, conn: NatsConnection, *, confirm_timeout: float = 5.0) -> None:
        self._conn = conn
        self._nc = conn.client
        self._js = self._nc.jetstream()
        self._inflight: deque[tuple[LostCallback, Any]] = deque()
        self._work = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._generation = 0
        self._confirm_timeout = confirm_timeout
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._flush: asyncio.Future[None] | None = None
        self._flush_started: float | None = None
        conn.add_listener(self._on_state)

    def start(self) -> None:
        self._task = asyncio.create_task(self._confirm_loop(), name="nats-confirm")

    def is_ready(self) -> bool:
        return not self._closing and self._nc.is_connected

    async def wait_ready(self) -> None:
        # nats-py marks itself reconnecting a moment before our "disconnected" callback clears
        # ``ready``; in that window ``ready.wait()`` returns at once while publishes still fail, and a
        # caller retrying in a loop would never yield: the event loop (and the gateway) would hang.
        while not self.is_ready():
            await self._conn.ready.wait()
            if not self.is_ready():
                await asyncio.sleep(_NOT_READY_BACKOFF)

    def confirm_overdue(self) -> bool:
        """A confirmation has been pending for over half the timeout: nothing is being confirmed."""
        started = self._flush_started
        return started is not None and time.monotonic() - started > self._confirm_timeout / 2

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def publish(
        self,
        subject: str,
        payload: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        jetstream: str | None = None,
        on_lost: LostCallback | None = None,
        token: Any = None,
    ) -> None:
        if self._closing or not self._nc.is_connected:
            raise PublishUnavailable("NATS is not connected")
        hdrs = dict(headers) if headers is not None else None
        if jetstream is not None:
            await self._publish_js(subject, payload, hdrs, jetstream)
            return
        try:
            await self._nc.publish(subject, payload, headers=hdrs)
        except nats.errors.MaxPayloadError:
            raise PublishRejected(f"{len(payload)} bytes exceed the server's max_payload") from None
        except (
            nats.errors.OutboundBufferLimitError,
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionDrainingError,
        ):
            raise PublishUnavailable("NATS is not accepting publishes") from None
        if on_lost is not None:
            self._inflight.append((on_lost, token))
            self._idle.clear()
            self._work.set()

    async def subscribe(self, subject: str, handler: MessageHandler) -> Unsubscribe:
        async def deliver(msg: Msg) -> None:
            await handler(msg.data)

        sub = await self._nc.subscribe(subject, cb=deliver)
        return sub.unsubscribe

    async def _publish_js(self, subject: str, payload: bytes, headers: dict[str, str] | None, stream: str) -> None:
        try:
            await self._js.publish(subject, payload, timeout=self._confirm_timeout, stream=stream, headers=headers)
        except nats.js.errors.NoStreamResponseError:
            raise PublishRejected(f"no JetStream stream {stream!r} covers {subject!r}") from None
        except nats.js.errors.APIError as exc:
            raise PublishRejected(f"JetStream rejected the message: {exc.description}") from None
        except (
            nats.errors.TimeoutError,
            nats.errors.ConnectionClosedError,
            nats.errors.NoRespondersError,
        ):
            # Unknown outcome: send again; the stream drops the copy by Nats-Msg-Id.
            raise PublishUnavailable("JetStream publish not acknowledged") from None

    async def _confirm_loop(self) -> None:
        while True:
            await self._work.wait()
            if not self._nc.is_connected:
                await self._conn.ready.wait()
                if not self._nc.is_connected:
                    await asyncio.sleep(_NOT_READY_BACKOFF)  # same window as in wait_ready: never spin
                continue
            upto, generation = len(self._inflight), self._generation
            # A task, so that a disconnect can abandon it: nats-py never fails a flush whose
            # connection dropped, it lets it time out, and waiting that out would leave everything
            # published meanwhile unconfirmed, to be sent twice at the next failover.
            self._flush_started = time.monotonic()
            flush = self._flush = asyncio.ensure_future(self._nc.flush(timeout=self._confirm_timeout))  # type: ignore[arg-type]  # nats-py annotates int, accepts float
            await asyncio.wait({flush})
            self._flush = self._flush_started = None
            failure = None if flush.cancelled() else flush.exception()
            if generation != self._generation:
                continue  # the connection broke meanwhile: those messages were given back
            if failure is not None:
                if isinstance(failure, nats.errors.FlushTimeoutError | TimeoutError):
                    # Connected but not confirming: a hung server. Drop it and try another; what
                    # it never confirmed comes back through the disconnect and is sent again.
                    logger.warning("NATS did not confirm within %gs: moving to another server", self._confirm_timeout)
                    await self._conn.abandon()
                await self._conn.ready.wait()
                continue
            for _ in range(min(upto, len(self._inflight))):
                self._inflight.popleft()
            if not self._inflight:
                self._work.clear()
                self._idle.set()

    def _on_state(self, state: str) -> None:
        if state != "disconnected":
            return
        self._generation += 1
        if self._flush is not None:
            self._flush.cancel()
        self._conn.discard_unsent_publishes()
        lost, self._inflight = self._inflight, deque()
        self._work.clear()
        self._idle.set()
        if lost:
            logger.warning("NATS connection lost: %d unconfirmed messages will be sent again", len(lost))
        for callback, token in lost:
            callback(token)

    async def close(self, timeout: float) -> None:
        """Stop accepting, wait (bounded) until everything handed over is confirmed."""
        self._closing = True
        if self._nc.is_connected:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

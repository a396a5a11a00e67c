"""In-memory :class:`~gateway.publish.base.Publisher`: the twin used by handler tests and benchmarks.

Messages are appended to :attr:`MemoryPublisher.messages` as they are published. ``set_ready``
simulates a broker outage: while not ready, ``publish`` raises ``PublishUnavailable`` exactly as
the NATS publisher does when disconnected; ``lose_unconfirmed`` plays back the "connection broke
before the broker confirmed" path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import PublishRejected, PublishUnavailable
from gateway.publish.base import LostCallback, MessageHandler, Unsubscribe


@dataclass(frozen=True, slots=True)
class PublishedMessage:
    subject: str
    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)
    jetstream: str | None = None


class MemoryPublisher:
    def __init__(self, *, max_payload: int = 1024 * 1024, confirm: bool = True) -> None:
        self.messages: list[PublishedMessage] = []
        self.max_payload = max_payload
        self._ready = asyncio.Event()
        self._ready.set()
        self._confirm = confirm
        self._unconfirmed: list[tuple[LostCallback, Any, int]] = []
        self._handlers: dict[str, list[MessageHandler]] = {}
        self.closed = False

    def is_ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def set_ready(self, ready: bool) -> None:
        if ready:
            self._ready.set()
        else:
            self._ready.clear()

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
        if self.closed or not self._ready.is_set():
            raise PublishUnavailable("memory publisher not ready")
        if len(payload) > self.max_payload:
            raise PublishRejected(f"payload of {len(payload)} bytes exceeds max_payload {self.max_payload}")
        self.messages.append(PublishedMessage(subject, payload, dict(headers or {}), jetstream))
        if not self._confirm and on_lost is not None:
            self._unconfirmed.append((on_lost, token, len(self.messages) - 1))
        for handler in list(self._handlers.get(subject, ())):  # exact subjects only: no wildcards here
            await handler(payload)

    async def subscribe(self, subject: str, handler: MessageHandler) -> Unsubscribe:
        self._handlers.setdefault(subject, []).append(handler)

        async def unsubscribe() -> None:
            self._handlers[subject].remove(handler)

        return unsubscribe

    def confirm_all(self) -> None:
        self._unconfirmed.clear()

    def lose_unconfirmed(self) -> int:
        """Drop every unconfirmed message from :attr:`messages` and give it back to its owner."""
        lost, self._unconfirmed = self._unconfirmed, []
        for _, _, index in sorted(lost, key=lambda x: -x[2]):
            del self.messages[index]
        for callback, token, _ in lost:
            callback(token)
        return len(lost)

    def subjects(self) -> list[str]:
        return [m.subject for m in self.messages]

    async def close(self, timeout: float) -> None:
        self.closed = True

"""The publish seam: what the stream buffers need from a message bus.

Contract: ``publish`` either hands the message to the bus or raises
:class:`~gateway.errors.PublishUnavailable` (not connected: keep it and retry after
:meth:`Publisher.wait_ready`) or :class:`~gateway.errors.PublishRejected` (never deliverable:
count it as dropped). A message that was handed over but that the broker never confirmed, because
the connection died first, is given back through ``on_lost`` so the caller can send it again:
with core NATS, a message written into a socket that then breaks is otherwise lost silently.
The same seam carries the few subscriptions the gateway makes (playback subjects of
bidirectional streams). Implementations: :class:`~gateway.publish.nats.NatsPublisher` and the in-memory twin
:class:`~gateway.publish.memory.MemoryPublisher`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, runtime_checkable

LostCallback = Callable[[Any], None]
MessageHandler = Callable[[bytes], Awaitable[None]]
Unsubscribe = Callable[[], Awaitable[None]]


@runtime_checkable
class Publisher(Protocol):
    def is_ready(self) -> bool:
        """True while messages can be handed over (connected, not draining)."""
        ...

    async def wait_ready(self) -> None:
        """Return once :meth:`is_ready` is true (after a reconnect)."""
        ...

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
        """Hand one message over. ``jetstream`` names a stream: publish with acknowledgement.

        If the connection breaks before the broker confirmed the message, ``on_lost(token)`` is
        called once (from the event loop) so the owner can send it again.
        """
        ...

    async def subscribe(self, subject: str, handler: MessageHandler) -> Unsubscribe:
        """Deliver the payloads published on ``subject`` to ``handler``, in order (the playback
        back-channel of bidirectional streams). Returns the coroutine function that unsubscribes."""
        ...

    async def close(self, timeout: float) -> None:
        """Flush what was handed over (bounded by ``timeout``) and disconnect."""
        ...

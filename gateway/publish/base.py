"""The publish seam: what a stream's outbox needs from the bus, and what the shell needs besides.

The per-frame contract is synchronous. An :class:`~gateway.publish.outbox.Outbox` reads
:attr:`Publisher.ready` and, while it is true, appends each encoded message (and itself, its
owner) to the link's current batch, calling :meth:`Publisher.schedule` when it was the first; the
link writes the batch in one go a moment later. While
the link is not ready (disconnected, or the broker is not keeping up), outboxes keep their
messages in order in their own bounded backlog and :meth:`Link.hold` them; the link calls
:meth:`Owner.drain` when it is ready again. Core NATS has no acknowledgements, so the link keeps
every written message until a PING/PONG round trip that started after it completes; when a
connection breaks first, it gives them back to their owner (:meth:`Owner.take_back`), which sends
them again ahead of anything newer. Implementations: :class:`~gateway.publish.nats.NatsPublisher`
and the in-memory twin :class:`~gateway.publish.memory.MemoryPublisher`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from gateway.publish.acks import AckRouter

MessageHandler = Callable[[bytes], None]
"""Called synchronously with each message's payload (it must not block)."""
Unsubscribe = Callable[[], None]
FlowListener = Callable[[bool], None]
"""Called with True when the link stops taking writes because the broker is slow, False when it
takes them again: the shell pauses and resumes reading the provider sockets."""

EVENT: int = -1
"""The ``track`` of a lifecycle event in an outbox's backlog (audio tracks are 0 and 1)."""


class Observer(Protocol):
    """A histogram (child) to time something with."""

    def observe(self, amount: float) -> None: ...


class Owner(Protocol):
    """What the link calls back on an outbox (both live in this package)."""

    def drain(self, budget: int) -> bool:
        """Write up to ``budget`` held messages; True when nothing is held any more."""
        ...

    def take_back(self, msgs: Sequence[bytes]) -> int:
        """Messages written but never confirmed (oldest first): send them again, first. Returns
        how many of them are audio frames."""
        ...


@runtime_checkable
class Publisher(Protocol):
    ready: bool
    """Connected and keeping up: outboxes may write straight through (read once per frame)."""

    batch: list[bytes]
    """Messages for the next write (appended to by outboxes, in step with :attr:`owners`)."""
    owners: list[Owner | None]

    def write(self, owner: Owner | None, msg: bytes) -> None:
        """Hand one encoded message over; only while :attr:`ready`. Never blocks, never fails."""
        ...

    def schedule(self) -> None:
        """The batch has just got its first message: write it soon."""
        ...

    def hold(self, owner: Owner) -> None:
        """``owner`` has a backlog: call its :meth:`Owner.drain` once ready."""
        ...

    def forget(self, owner: Owner) -> None:
        """``owner`` gave up its backlog (abandoned at shutdown): stop draining it."""
        ...

    @property
    def held(self) -> int:
        """Outboxes still holding messages (buffers not yet emptied)."""
        ...

    def is_ready(self) -> bool: ...

    async def wait_ready(self) -> None:
        """Return once :attr:`ready` (after a reconnect)."""
        ...

    def add_flow_listener(self, listener: FlowListener) -> None: ...

    async def publish(self, subject: str, payload: bytes, headers: Mapping[str, str] | None = None) -> None:
        """One message outside any stream (status callbacks); raises ``PublishUnavailable``."""
        ...

    def jetstream_acks(self) -> AckRouter:
        """The process's JetStream acknowledgement router (made on first use): JetStream outboxes
        write their messages with its reply subjects and hear the outcome from it."""
        ...

    def subscribe(self, subject: str, handler: MessageHandler) -> Unsubscribe:
        """Deliver the payloads published on ``subject`` to ``handler``, in order (the playback
        back-channel of bidirectional streams). Returns the function that unsubscribes."""
        ...

    def time_next_write(self, observer: Observer) -> None:
        """Observe, in seconds, how long until the current batch is written (latency sampling)."""
        ...

    async def wait_idle(self, timeout: float) -> bool:
        """True once nothing is held and everything written is confirmed (bounded wait)."""
        ...

    async def close(self, timeout: float) -> None:
        """Stop taking writes; wait (bounded) until everything written is confirmed."""
        ...


class StreamOutbox(Protocol):
    """One stream's messages on their way to the bus (core NATS or JetStream, the shell cannot tell)."""

    capacity: int
    audio_held: int
    held_per_track: list[int]
    """Audio frames not yet handed over (JetStream: not yet acknowledged), per track index."""
    dropped: dict[str, list[int]]
    """Audio frames not delivered: reason -> per track index."""

    @property
    def holding(self) -> bool:
        """Messages not yet handed over (or, for JetStream, not yet acknowledged)."""
        ...

    def frame(self, track: int, seq: int, ts: int, payload: bytes) -> None: ...

    def event(self, subject: str, body: bytes, headers: Mapping[str, str], *, final: bool = False) -> None: ...

    def dropped_per_track(self) -> list[int]: ...

    def seal(self) -> None:
        """The stream has ended: nothing more will be added."""
        ...

    def abandon(self, reason: str) -> int:
        """Drop (and count) everything still held; returns the audio frames dropped."""
        ...

"""In-memory :class:`~gateway.publish.base.Publisher`: the twin used by unit tests and benchmarks.

It takes the same encoded PUB/HPUB bytes as the NATS link and reads them back
(:func:`gateway.publish.wire.parse`) into :attr:`MemoryPublisher.messages`, so a test sees exactly
what NATS would have received. ``set_ready(False)`` plays an outage (outboxes hold),
``set_saturated(True)`` a slow broker (outboxes hold and flow listeners pause the provider sockets);
``set_ready(True)`` reconnects and empties the held backlogs. With
``confirm=False`` written messages stay unconfirmed until :meth:`confirm_all`, and
:meth:`lose_unconfirmed` plays "the connection broke before the broker confirmed them".

JetStream publishes (a reply subject of :meth:`MemoryPublisher.jetstream_acks`) are stored once
per ``Nats-Msg-Id``, with ``jetstream`` set to their ``Nats-Expected-Stream``, and answered on the
next loop iteration as a stream would (a duplicate is answered ``duplicate``); ``js_refusal``
makes every answer that refusal instead, and ``js_answer=False`` keeps the answers until
:meth:`answer_jetstream`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.errors import PublishRejected, PublishUnavailable
from gateway.publish.acks import AckRouter
from gateway.publish.base import FlowListener, MessageHandler, Observer, Owner, Unsubscribe
from gateway.publish.wire import Message, encode, parse

NO_RESPONDERS = ("503", b"")
"""A ``js_refusal``: no stream listens on the subject."""


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
        self.ready = True
        self.batch: list[bytes] = []
        self.owners: list[Owner | None] = []
        self._ready = asyncio.Event()
        self._ready.set()
        self._confirm = confirm
        self._unconfirmed: list[tuple[Owner, bytes, int, int]] = []
        """(owner, what it wrote, the range of :attr:`messages` that came from it: one write may
        carry several messages, e.g. a frame and its copies)."""
        self._held: dict[Owner, None] = {}
        self._flow: list[FlowListener] = []
        self._handlers: dict[str, list[MessageHandler]] = {}
        self.closed = False
        self._acks: AckRouter | None = None
        self.ack_timeout = 2.0
        self._js_ids: set[tuple[str, str]] = set()
        self.js_answer = True
        self.js_refusal: tuple[str | None, bytes] | None = None
        """(status header, body) every JetStream publish is answered with, e.g. :data:`NO_RESPONDERS`."""
        self.js_answers: list[tuple[int, str | None, bytes]] = []
        """Answers kept back while ``js_answer`` is False."""

    def write(self, owner: Owner | None, msg: bytes) -> None:
        self.batch.append(msg)
        self.owners.append(owner)
        self.schedule()

    def schedule(self) -> None:
        """Written at once (a test sees each message as soon as it is handed over)."""
        batch, owners = self.batch, self.owners
        self.batch, self.owners = [], []
        for msg, owner in zip(batch, owners, strict=True):
            first = len(self.messages)
            for m in parse(msg):
                if self._acks is not None and m.reply.startswith(self._acks.prefix.decode()):
                    self._jetstream(m, self._acks)
                    continue
                self.messages.append(PublishedMessage(m.subject, m.payload, m.headers))
            if not self._confirm and owner is not None:
                self._unconfirmed.append((owner, msg, first, len(self.messages)))

    def hold(self, owner: Owner) -> None:
        self._held[owner] = None
        if self.ready:
            self._drain()

    def forget(self, owner: Owner) -> None:
        self._held.pop(owner, None)

    @property
    def held(self) -> int:
        return len(self._held)

    def _drain(self) -> None:
        while self._held and self.ready:
            for owner in list(self._held):
                if owner.drain(256):
                    del self._held[owner]

    def is_ready(self) -> bool:
        return self.ready

    def time_next_write(self, observer: Observer) -> None:
        observer.observe(0.0)  # written at once

    async def wait_idle(self, timeout: float) -> bool:
        return not self._held and not self._unconfirmed

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def add_flow_listener(self, listener: FlowListener) -> None:
        self._flow.append(listener)

    def set_saturated(self, saturated: bool) -> None:
        """A slow broker (connected): flow listeners pause the provider sockets; outboxes hold."""
        for listener in self._flow:
            listener(saturated)
        self.set_ready(not saturated)

    def set_ready(self, ready: bool) -> None:
        """Connected (True) or an outage (False)."""
        if ready == self.ready:
            return
        self.ready = ready
        if ready:
            self._ready.set()
            self._drain()
        else:
            self._ready.clear()

    async def publish(self, subject: str, payload: bytes, headers: Mapping[str, str] | None = None) -> None:
        if self.closed or not self.ready:
            raise PublishUnavailable("memory publisher not ready")
        if len(payload) > self.max_payload:
            raise PublishRejected(f"payload of {len(payload)} bytes exceeds max_payload {self.max_payload}")
        for m in parse(encode(subject, payload, headers)):
            self.messages.append(PublishedMessage(m.subject, m.payload, m.headers))
        for handler in list(self._handlers.get(subject, ())):  # exact subjects only: no wildcards here
            handler(payload)

    def jetstream_acks(self) -> AckRouter:
        if self._acks is None:
            self._acks = AckRouter(b"_INBOX.memory.", timeout=self.ack_timeout)
        return self._acks

    def _jetstream(self, m: Message, acks: AckRouter) -> None:
        token = int(m.reply[len(acks.prefix) :])
        stream = m.headers.get("Nats-Expected-Stream", "")
        status: str | None = None
        if self.js_refusal is not None:
            status, body = self.js_refusal
        elif (stream, m.headers.get("Nats-Msg-Id", "")) in self._js_ids:
            body = b'{"stream":"%b","seq":0,"duplicate":true}' % stream.encode()
        else:
            self._js_ids.add((stream, m.headers.get("Nats-Msg-Id", "")))
            self.messages.append(PublishedMessage(m.subject, m.payload, m.headers, stream))
            body = b'{"stream":"%b","seq":%d}' % (stream.encode(), len(self.messages))
        if self.js_answer:
            asyncio.get_running_loop().call_soon(acks.on_reply, token, status, body)
        else:
            self.js_answers.append((token, status, body))

    def answer_jetstream(self) -> int:
        """Deliver the answers kept back; returns how many."""
        answers, self.js_answers = self.js_answers, []
        if self._acks is not None:
            for token, status, body in answers:
                self._acks.on_reply(token, status, body)
        return len(answers)

    def subscribe(self, subject: str, handler: MessageHandler) -> Unsubscribe:
        self._handlers.setdefault(subject, []).append(handler)

        def unsubscribe() -> None:
            self._handlers[subject].remove(handler)

        return unsubscribe

    def confirm_all(self) -> None:
        self._unconfirmed.clear()

    def lose_unconfirmed(self) -> int:
        """The connection broke: not ready, and every unconfirmed message is dropped from
        :attr:`messages` and given back to its owner (``set_ready(True)`` reconnects)."""
        self.set_ready(False)
        lost, self._unconfirmed = self._unconfirmed, []
        for _, _, first, end in sorted(lost, key=lambda x: -x[2]):
            del self.messages[first:end]
        by_owner: dict[Owner, list[bytes]] = {}
        for owner, msg, _, _ in lost:
            by_owner.setdefault(owner, []).append(msg)
        for owner, msgs in by_owner.items():
            owner.take_back(msgs)
        return len(lost)

    def subjects(self) -> list[str]:
        return [m.subject for m in self.messages]

    async def close(self, timeout: float) -> None:
        self.closed = True
        self.ready = False

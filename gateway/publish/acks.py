"""JetStream acknowledgements for every JetStream outbox of a process: one reply inbox, tokens, timeouts.

A JetStream publish is a core publish with a reply subject: the stream answers there once it has
stored the message. :class:`AckRouter` hands out the reply tokens (``<prefix><token>``), knows
which outbox waits for each, reads the replies and tells the outbox the outcome. The outboxes
send their messages themselves, pipelined, through the link's batched writes
(:mod:`gateway.publish.jetstream`).

Replies mean what they mean to nats-py's ``JetStreamContext.publish_async`` (nats-py 2.x), whose
scheme this mirrors: one wildcard subscription on ``<inbox prefix>.<nuid>.*``; a reply carrying
the header ``Status: 503`` with no body is "no responders" (no stream listens on the subject;
nats-py raises ``NoStreamResponseError``); a JSON body with ``error`` is an API error (nats-py's
``APIError``: ``code``, ``err_code``, ``description``); anything else is a ``PubAck``
(``stream``, ``seq``, ``duplicate`` when the stream already held that ``Nats-Msg-Id``).
``publish_async`` itself is not used: it awaits a coroutine, builds the headers and a future per
message, has no acknowledgement timeout and queues every reply through a task (figures in
:mod:`gateway.publish.jetstream`).

Timeouts are coarse and cost nothing per message: tokens only grow, so the router notes the next
token every ``timeout / 4`` and, a ``timeout`` later, every token below that note has waited at
least that long; its outbox sends it again under the same token, so the answer to either copy
settles it (same ``Nats-Msg-Id``: the stream's duplicate window drops the copy, and the second
answer finds nobody waiting). When the connection breaks, every outbox puts what it had in flight
back at the front of its queue and sends it again, under new tokens, after the reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Final, Protocol

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg

from gateway.publish.subscriptions import Shim

logger = logging.getLogger(__name__)

KIND_BITS: Final = 2
"""The low bits of a token say what it carries: 0 inbound audio, 1 outbound audio, 2 an event."""
KIND_MASK: Final = (1 << KIND_BITS) - 1
EVENT_KIND: Final = 2
_SWEEPS_PER_TIMEOUT: Final = 4
_NO_STREAM_ERR: Final = 10060
"""``expected stream does not match``: another stream captures the subject."""
_STORE_FAILED_ERR: Final = 10077
"""``maximum messages/bytes exceeded``: the stream is full and discards new messages."""

REFUSAL_REASONS: Final = ("no_stream", "stream_full", "rejected")
"""The ``reason`` of what a stream finally refused (bounded metric labels)."""


class AckOwner(Protocol):
    """What the router calls back on a JetStream outbox."""

    def acked(self, token: int) -> None:
        """Stored (or already stored: a duplicate)."""
        ...

    def refused(self, token: int, reason: str, final: bool) -> None:
        """Not stored: for good (``final``), or perhaps only for now."""
        ...

    def expire(self, before: int, now: float, timeout: float) -> None:
        """Every token below ``before`` was first sent a whole ``timeout`` ago: send those again
        (under the same token) unless they were sent again less than ``timeout`` ago."""
        ...

    def requeue(self) -> None:
        """The connection broke: everything in flight goes back to the front of the queue."""
        ...


class _ApiError(msgspec.Struct):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _Reply(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _ApiError | None = None


_DECODE: Final = msgspec.json.Decoder(_Reply).decode


def classify(error: _ApiError) -> tuple[str, bool]:
    """(reason, final) of an API error. A 503 other than a full stream is the JetStream system
    being unavailable for a moment (a leader election): worth a few more tries."""
    if error.err_code == _STORE_FAILED_ERR:
        return "stream_full", True
    if error.err_code == _NO_STREAM_ERR:
        return "no_stream", True
    return "rejected", error.code != 503


class AckRouter:
    """Reply tokens, their owners and the timeout sweep (one per process, shared by every stream)."""

    __slots__ = (
        "_counter",
        "_idle",
        "_loop",
        "_marks",
        "_reported",
        "_sweep_handle",
        "_timeout",
        "on_resent",
        "owners",
        "prefix",
        "resent",
    )

    def __init__(self, prefix: bytes, *, timeout: float, on_resent: Callable[[int], None] | None = None) -> None:
        self.prefix = prefix
        """The reply subject up to the token, ending with a dot."""
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._counter = 0
        self.owners: dict[int, AckOwner] = {}
        """Token -> the outbox waiting for its reply."""
        self._marks: deque[tuple[float, int]] = deque()
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._reported: set[tuple[str, str, str]] = set()
        self.on_resent = on_resent
        self.resent = 0
        """Audio frames sent again (timeout or reconnect)."""

    # -- per message -------------------------------------------------------------------------------

    def issue(self, owner: AckOwner, kind: int) -> int:
        self._counter += 1
        token = self._counter << KIND_BITS | kind
        owners = self.owners
        if not owners:
            self._idle.clear()
        owners[token] = owner
        if self._sweep_handle is None:
            self._arm()
        return token

    def await_again(self, token: int, owner: AckOwner) -> None:
        """Keep waiting for ``token`` (a reply that asks for another try): it expires like one
        never answered."""
        if not self.owners:
            self._idle.clear()
        self.owners[token] = owner
        if self._sweep_handle is None:
            self._arm()

    def _arm(self) -> None:
        self._marks.append((self._loop.time(), self._counter))
        self._sweep_handle = self._loop.call_later(self._timeout / _SWEEPS_PER_TIMEOUT, self._sweep)

    def release(self, token: int) -> None:
        """The owner no longer waits for this token (dropped, or sent again under a new one)."""
        owners = self.owners
        if owners.pop(token, None) is not None and not owners:
            self._idle.set()

    def on_reply(self, token: int, status: str | None, data: bytes) -> None:
        owners = self.owners
        owner = owners.pop(token, None)
        if owner is None:
            return  # the reply to a copy already answered, or to a message given up on
        if not owners:
            self._idle.set()
        if status == "503":
            owner.refused(token, "no_stream", False)
            return
        if status is not None:
            owner.refused(token, "rejected", False)
            return
        try:
            reply = _DECODE(data)
        except msgspec.DecodeError:
            logger.warning("unreadable JetStream acknowledgement %r: sending the message again", data[:200])
            self.await_again(token, owner)
            return
        if reply.error is None:
            owner.acked(token)
        else:
            reason, final = classify(reply.error)
            owner.refused(token, reason, final)

    def report(self, stream: str, what: str, reason: str, detail: str) -> None:
        """Log a refusal once per stream, kind of message and reason (the count is the metric)."""
        key = (stream, what, reason)
        if key in self._reported:
            return
        self._reported.add(key)
        logger.error(
            "JetStream stream %s refused %s (%s: %s); they are dropped and counted (reason %s). "
            "Does the stream exist and cover the route's subjects?",
            stream,
            what,
            reason,
            detail,
            reason,
        )

    def count_resent(self, frames: int) -> None:
        if frames:
            self.resent += frames
            if self.on_resent is not None:
                self.on_resent(frames)

    # -- timeouts and the connection ---------------------------------------------------------------

    def _sweep(self) -> None:
        now = self._loop.time()
        marks = self._marks
        marks.append((now, self._counter + 1))
        threshold = 0
        while marks and marks[0][0] <= now - self._timeout:
            threshold = marks.popleft()[1]
        if threshold:
            marks.appendleft((now - self._timeout, threshold))  # still the newest old mark
            before = threshold << KIND_BITS
            for owner in list(dict.fromkeys(self.owners.values())):
                owner.expire(before, now, self._timeout)
        if self.owners:
            self._sweep_handle = self._loop.call_later(self._timeout / _SWEEPS_PER_TIMEOUT, self._sweep)
        else:
            self._sweep_handle = None
            marks.clear()

    def disconnected(self) -> None:
        owners = list(dict.fromkeys(self.owners.values()))
        self.owners.clear()
        self._idle.set()
        for owner in owners:
            owner.requeue()

    def on_state(self, state: str) -> None:
        """A :class:`~gateway.publish.connection.NatsConnection` listener."""
        if state == "disconnected":
            self.disconnected()

    @property
    def waiting(self) -> int:
        """Messages published and not yet answered."""
        return len(self.owners)

    async def wait_idle(self, timeout: float) -> bool:
        """True once no reply is awaited any more (bounded)."""
        if not self.owners:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return not self.owners

    def close(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None


class _Inbox(Shim):
    """The reply subscription as nats-py's reader sees it: a stand-in without a queue or a task
    (:class:`gateway.publish.subscriptions.Shim`), except that the handler gets the whole message:
    the status header says "no responders". Runs inside nats-py's reader, synchronously."""

    __slots__ = ("_router", "_skip")

    def __init__(self, router: AckRouter) -> None:
        super().__init__(router.prefix.decode() + "*")
        self._router = router
        self._skip = len(router.prefix)

    def put_nowait(self, msg: Msg) -> None:
        self._pending_size = 0
        try:
            token = int(msg.subject[self._skip :])
        except ValueError:
            return
        headers = msg.headers
        try:
            self._router.on_reply(token, headers.get("Status") if headers else None, msg.data)
        except Exception:  # an outbox bug must not break nats-py's reader for everyone
            logger.exception("JetStream acknowledgement handling failed")


def nats_router(client: Client, *, timeout: float, on_resent: Callable[[int], None] | None = None) -> AckRouter:
    """A router whose replies arrive on a new inbox of ``client`` (subscribed at once if connected;
    nats-py subscribes it again after every reconnect)."""
    router = AckRouter((client.new_inbox() + ".").encode(), timeout=timeout, on_resent=on_resent)
    _Inbox(router).register(client)
    return router

"""The NATS link: every stream's messages, written in batches and confirmed by PONG.

nats-py keeps the connection (reconnects, auth, TLS, server discovery, subscriptions, JetStream);
this module only writes pre-encoded PUB/HPUB commands into that connection's transport, batched:
the first write after a flush schedules the next flush ``flush_interval`` later (0: at the end
of the event-loop iteration), which writes everything written meanwhile with one
``transport.write``. At real-time load a socket read brings one or two frames, so flushing per
iteration meant one write system call per read; a millisecond collects many (uvloop's timers
count whole milliseconds: see ``NatsSettings.flush_interval`` for the measured trade). nats-py's
per-message ``publish`` awaits a coroutine and builds headers per call; this path awaits nothing
(see ``bench/RESULTS.md`` for the figures). JetStream routes' messages travel in the same batches,
with reply subjects from :mod:`gateway.publish.acks` (:meth:`NatsPublisher.jetstream_acks`).

Delivery confirmation: core NATS has no acknowledgements, and a message written into a socket that
then breaks is gone without a trace. So each written batch stays in :attr:`_unconfirmed` until
the PONG of a PING written after it arrives (one PING at a time, at most every ``confirm_interval``).
When the connection breaks, every unconfirmed message goes back to its outbox, which sends it again
first: nothing is lost, and a consumer may rarely see a frame twice (same ``Sgw-Seq``). A PONG
says the server has read the messages before it, not that it has written them on: nats-server
answers a PING through the client's write loop while the messages it just read wait in the
subscribers' and routes' buffers until the end of that read, so a server killed in between loses
messages it confirmed (CI lost one 8-frame batch that way in a cluster failover). Confirmed
batches are therefore kept ``resend_window`` seconds more and go back with the unconfirmed ones.

A PING not answered within ``confirm_timeout`` means a hung server: the connection is dropped and
nats-py moves to another server of the list; readiness turns false after half that time. A slow
server is not a hung one: while megabytes wait in the socket, a PING behind them can take longer
than the timeout although the server reads steadily. So the clock restarts whenever the server is
seen reading: more than ``_BACKLOG`` bytes waited on our side (in the transport or the kernel's
send queue) at one round of the watch, and fewer bytes wait than were written since. Only a server
that neither answers nor reads is left; dropping a slow one would only send everything unconfirmed
again (the benchmark saw 417,000 duplicate frames from that at 600 calls). The threshold keeps
bytes merely in flight to a frozen server from passing for reading: a frozen server is left once
its receive buffer is full, within the timeout when the traffic is light.

Backpressure: when more than ``pending_bytes`` wait in the socket for a slow broker, the link stops
taking writes (outboxes hold, within their bounds) and tells its flow listeners, which pause
reading the provider sockets; when the socket has drained it takes writes again and empties the
held backlogs, oldest first, stream by stream.

nats-py internals touched (nats-py 2.x, pinned <3): ``Client._transport`` (its ``write`` and the
asyncio transport under it, for the batch write and the buffer size) and ``Client._pongs`` (the
queue of PING futures its reader resolves on PONG; a PING of ours must take its place in it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import sys
import termios
from collections import deque
from collections.abc import Mapping
from functools import partial
from typing import Any, Final

from gateway.errors import PublishRejected, PublishUnavailable
from gateway.publish.acks import AckRouter, nats_router
from gateway.publish.base import FlowListener, MessageHandler, Observer, Owner, Unsubscribe
from gateway.publish.connection import NatsConnection
from gateway.publish.subscriptions import Subscriptions
from gateway.publish.wire import PING, encode

logger = logging.getLogger(__name__)

_DRAIN_BUDGET: Final = 256
"""Held messages one outbox writes per drain round, so streams share the link fairly."""
_WATCH_FRACTION: Final = 4
_BACKLOG: Final = 64 * 1024
"""Bytes waiting on our side above which their draining shows a server reading (see above)."""
"""The stale-PING watch runs every ``confirm_timeout / 4``."""


class NatsPublisher:
    # Slots: every frame touches this object, and slot reads skip the instance dict.
    __slots__ = (
        "_ack_timeout",
        "_acks",
        "_batches",
        "_closing",
        "_confirm_interval",
        "_confirm_timeout",
        "_confirmed",
        "_conn",
        "_draining",
        "_flow",
        "_flush_interval",
        "_generation",
        "_held",
        "_idle",
        "_last_ping",
        "_loop",
        "_nc",
        "_pending_bytes",
        "_ping_timer",
        "_pings",
        "_progress_at",
        "_recent",
        "_resend_window",
        "_saturated",
        "_scheduled",
        "_subscriptions",
        "_taken",
        "_tasks",
        "_timed",
        "_unconfirmed",
        "_waiting",
        "_written",
        "batch",
        "owners",
        "ready",
        "rejected",
        "resent",
    )

    def __init__(
        self,
        conn: NatsConnection,
        *,
        confirm_timeout: float = 2.0,
        confirm_interval: float = 0.005,
        flush_interval: float = 0.001,
        pending_bytes: int = 8 * 1024 * 1024,
        ack_timeout: float = 2.0,
        resend_window: float = 0.1,
    ) -> None:
        self._conn = conn
        self._nc = conn.client
        self._ack_timeout = ack_timeout
        self._acks: AckRouter | None = None
        self._loop = asyncio.get_running_loop()
        self.ready = False
        self._closing = False
        self._saturated = False
        self.batch: list[bytes] = []
        """Messages waiting for the next flush (outboxes append to it directly; see Outbox.frame)."""
        self.owners: list[Owner | None] = []
        """The outbox of each message in :attr:`batch` (None: not sent again, e.g. status events)."""
        self._scheduled = False
        self._subscriptions = Subscriptions(self._nc)
        self._timed: list[tuple[Observer, float]] = []
        # Unconfirmed messages are kept per flushed batch, not per message: a tuple per frame that
        # lives until its PONG is a tracked allocation, and at 150,000 frames/s those kept the
        # cyclic GC busy (15 % of the gateway's CPU in a perf profile at maximum rate).
        self._unconfirmed: deque[tuple[list[bytes], list[Owner | None]]] = deque()
        self._recent: deque[tuple[float, list[bytes], list[Owner | None]]] = deque()
        """Batches confirmed within the last ``resend_window`` seconds: (confirmed at, messages, owners)."""
        self._resend_window = resend_window
        self._batches = 0
        """Batches written since the connection was made."""
        self._confirmed = 0
        """Batches confirmed by a PONG."""
        self._pings: deque[tuple[float, int]] = deque()
        """Outstanding PINGs of ours: (sent at, batches written before it)."""
        self._ping_timer: asyncio.TimerHandle | None = None
        self._last_ping = 0.0
        self._generation = 0
        self._written = 0
        """Bytes handed to this connection's transport (the watch's measure of a server reading)."""
        self._taken = 0
        """Of those, bytes the server's side had received at the last watch round."""
        self._waiting = 0
        """Bytes waiting on our side (transport and kernel send queue) at the last watch round."""
        self._progress_at = 0.0
        """When the server was last seen reading (see the module docstring)."""
        self._held: dict[Owner, None] = {}
        self._draining = False
        self._flow: list[FlowListener] = []
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._confirm_timeout = confirm_timeout
        self._confirm_interval = confirm_interval
        self._flush_interval = flush_interval
        self._pending_bytes = pending_bytes
        self.resent = 0
        self.rejected = 0
        conn.add_listener(self._on_state)

    def start(self) -> None:
        self._set_ready(self._nc.is_connected)
        self._spawn(self._watch_pings(), "nats-confirm-watch")

    # -- the per-frame path ------------------------------------------------------------------------

    def write(self, owner: Owner | None, msg: bytes) -> None:
        """Hand one message over (only while :attr:`ready`); outboxes inline this for audio."""
        self.batch.append(msg)
        self.owners.append(owner)
        if len(self.batch) == 1:
            self.schedule()

    def schedule(self) -> None:
        """The batch got its first message: flush it ``flush_interval`` from now."""
        if not self._scheduled:
            self._scheduled = True
            self._idle.clear()
            if self._flush_interval:
                self._loop.call_later(self._flush_interval, self._flush)
            else:
                self._loop.call_soon(self._flush)

    def time_next_write(self, observer: Observer) -> None:
        self._timed.append((observer, self._loop.time()))

    def _flush(self) -> None:
        self._scheduled = False
        if self._timed:
            now = self._loop.time()
            for observer, since in self._timed:
                observer.observe(now - since)
            self._timed.clear()
        batch = self.batch
        if not batch or not self._nc.is_connected:
            return  # the disconnect gives the batch back to its outboxes
        owners = self.owners
        self.batch, self.owners = [], []
        self._unconfirmed.append((batch, owners))
        self._batches += 1
        data = b"".join(batch)
        if not self._pings:
            now = self._loop.time()
            if now - self._last_ping >= self._confirm_interval:
                self._send_ping(now)
                data += PING  # after every message it confirms
            elif self._ping_timer is None:
                # Due shortly: the tail of a burst must be confirmed too.
                self._ping_timer = self._loop.call_at(self._last_ping + self._confirm_interval, self._timed_ping)
        transport: Any = self._nc._transport
        transport.write(data)
        self._written += len(data)
        if self._write_buffer_size(transport) > self._pending_bytes:
            self._saturate()

    def _send_ping(self, now: float) -> None:
        """Take a place in nats-py's PONG queue; the caller writes the PING bytes right after."""
        future: asyncio.Future[bool] = self._loop.create_future()
        self._nc._pongs.append(future)
        self._pings.append((now, self._batches))
        self._last_ping = now
        future.add_done_callback(partial(self._on_pong, self._batches, self._generation))

    def _ping_now(self) -> None:
        """A PING on its own, when nothing is batched (a batch carries its own PING)."""
        if self.batch or self._pings or self._batches == self._confirmed or not self._nc.is_connected:
            return
        self._send_ping(self._loop.time())
        transport: Any = self._nc._transport
        transport.write(PING)
        self._written += len(PING)

    def _timed_ping(self) -> None:
        self._ping_timer = None
        self._ping_now()

    def _on_pong(self, mark: int, generation: int, future: asyncio.Future[bool]) -> None:
        if generation != self._generation or future.cancelled() or not self._pings:
            # That connection is gone (its messages were given back already), or being left: the
            # watch gave up on it, and what this PONG confirms is sent again (at most a duplicate).
            return
        self._pings.popleft()
        unconfirmed, recent = self._unconfirmed, self._recent
        now = self._loop.time()
        for _ in range(mark - self._confirmed):
            batch, owners = unconfirmed.popleft()
            recent.append((now, batch, owners))
        self._confirmed = mark
        self._forget_recent(now)
        if self._batches > self._confirmed:
            if now - self._last_ping >= self._confirm_interval:
                self._ping_now()
            elif self._ping_timer is None and not self.batch:
                self._ping_timer = self._loop.call_at(self._last_ping + self._confirm_interval, self._timed_ping)
        elif self._is_idle():
            self._idle.set()

    def _forget_recent(self, now: float) -> None:
        recent, horizon = self._recent, now - self._resend_window
        while recent and recent[0][0] < horizon:
            recent.popleft()

    @staticmethod
    def _write_buffer_size(transport: Any) -> int:
        writer = getattr(transport, "_io_writer", None)
        return 0 if writer is None else int(writer.transport.get_write_buffer_size())

    # -- held backlogs, readiness and backpressure -------------------------------------------------

    def hold(self, owner: Owner) -> None:
        self._held[owner] = None
        self._idle.clear()
        if self.ready:
            self._schedule_drain()

    def forget(self, owner: Owner) -> None:
        self._held.pop(owner, None)
        if self._is_idle():
            self._idle.set()

    def _is_idle(self) -> bool:
        return not self._unconfirmed and not self.batch and not self._held

    @property
    def held(self) -> int:
        return len(self._held)

    def _schedule_drain(self) -> None:
        if not self._draining:
            self._draining = True
            self._loop.call_soon(self._drain_round)

    def _drain_round(self) -> None:
        """One round: every holding outbox writes a share; again next iteration if any remain."""
        self._draining = False
        for owner in list(self._held):
            if not self.ready:
                return
            if owner.drain(_DRAIN_BUDGET):
                del self._held[owner]
        if self._held and self.ready:
            self._schedule_drain()

    def _saturate(self) -> None:
        self._set_saturated(True)
        logger.warning("NATS is not keeping up (%d bytes waiting): pausing the provider sockets", self._pending_bytes)
        self._spawn(self._desaturate(self._generation), "nats-backpressure")

    async def _desaturate(self, generation: int) -> None:
        transport: Any = self._nc._transport
        with contextlib.suppress(ConnectionError, RuntimeError, AttributeError):
            await transport.drain()  # returns once the socket buffer is below its low mark
        if generation == self._generation and self._saturated:
            self._set_saturated(False)

    def _set_saturated(self, saturated: bool) -> None:
        """Only a slow broker pauses the provider sockets; during an outage they are read, and the
        outboxes hold the audio within their bounds (the outage window)."""
        if saturated == self._saturated:
            return
        self._saturated = saturated
        for listener in self._flow:
            listener(saturated)
        self._set_ready(self._nc.is_connected)

    def _set_ready(self, ready: bool) -> None:
        ready = ready and not self._closing and not self._saturated
        if ready == self.ready:
            return
        self.ready = ready
        if ready and self._held:
            self._schedule_drain()

    def add_flow_listener(self, listener: FlowListener) -> None:
        self._flow.append(listener)

    def is_ready(self) -> bool:
        return self.ready

    async def wait_ready(self) -> None:
        while not self.ready:
            await self._conn.ready.wait()
            if not self.ready:
                await asyncio.sleep(0.02)  # nats-py reconnecting before our callback ran: never spin

    def confirm_overdue(self) -> bool:
        """A PING has been waiting for over half the timeout, and the server is not reading."""
        return self._unanswered_for() > self._confirm_timeout / 2

    def _unanswered_for(self) -> float:
        """Seconds the oldest PING has waited while the server was not seen reading (0: none)."""
        if not self._pings:
            return 0.0
        return self._loop.time() - max(self._pings[0][0], self._progress_at)

    def _note_progress(self) -> None:
        """Did the server read since the last round? Counted only when a backlog waited on our side
        at the last round: then what left it was read by the server, not merely sent."""
        transport: Any = self._nc._transport
        waiting = self._write_buffer_size(transport) + _send_queue(transport) if self._nc.is_connected else 0
        taken = self._written - waiting
        if self._waiting > _BACKLOG and taken > self._taken:
            self._progress_at = self._loop.time()
        self._taken, self._waiting = taken, waiting

    @property
    def inflight(self) -> int:
        """Messages written and not confirmed yet: by a PONG, or for JetStream by the stream."""
        unacknowledged = self._acks.waiting if self._acks is not None else 0
        return len(self.batch) + sum(len(batch) for batch, _ in self._unconfirmed) + unacknowledged

    async def _watch_pings(self) -> None:
        while True:
            await asyncio.sleep(self._confirm_timeout / _WATCH_FRACTION)
            self._forget_recent(self._loop.time())  # between calls too: release ended streams' outboxes
            self._note_progress()
            if self._unanswered_for() > self._confirm_timeout:
                # Connected but not confirming: a hung server (or path). Drop it and try another;
                # what it never confirmed comes back through the disconnect and is sent again.
                logger.warning("NATS did not confirm within %gs: moving to another server", self._confirm_timeout)
                self._pings.clear()
                await self._conn.abandon()

    def _on_state(self, state: str) -> None:
        if state in ("connected", "reconnected"):
            self._set_ready(True)
            return
        self._set_ready(False)
        if state != "disconnected":
            return
        self._generation += 1
        self._pings.clear()
        self._written = self._taken = self._waiting = 0
        if self._ping_timer is not None:
            self._ping_timer.cancel()
            self._ping_timer = None
        self._set_saturated(False)
        self._conn.discard_unsent_publishes()
        self._forget_recent(self._loop.time())
        lost = [(batch, owners) for _, batch, owners in self._recent]
        lost.extend(self._unconfirmed)
        if self.batch:
            lost.append((self.batch, self.owners))
        self._recent = deque()
        self._unconfirmed = deque()
        self.batch, self.owners = [], []
        self._batches = self._confirmed = 0
        by_owner: dict[Owner, list[bytes]] = {}
        for msgs, owners in lost:
            for msg, owner in zip(msgs, owners, strict=True):
                if owner is not None:
                    by_owner.setdefault(owner, []).append(msg)
        if not by_owner:
            return
        given = sum(map(len, by_owner.values()))
        logger.warning("NATS connection lost: %d recent or unconfirmed messages will be sent again", given)
        for owner, msgs in by_owner.items():
            self.resent += owner.take_back(msgs)

    # -- outside the per-frame path ----------------------------------------------------------------

    async def publish(self, subject: str, payload: bytes, headers: Mapping[str, str] | None = None) -> None:
        if not self.ready:
            raise PublishUnavailable("NATS is not connected")
        if len(payload) > self._nc.max_payload:
            raise PublishRejected(f"{len(payload)} bytes exceed the server's max_payload")
        self.write(None, encode(subject, payload, headers))

    def jetstream_acks(self) -> AckRouter:
        """The JetStream acknowledgement router (routes with ``target.jetstream``), made on first
        use: its reply inbox is subscribed only in processes that have such a route."""
        if self._acks is None:
            self._acks = nats_router(self._nc, timeout=self._ack_timeout, on_resent=self._count_resent)
            self._conn.add_listener(self._acks.on_state)
        return self._acks

    def _count_resent(self, frames: int) -> None:
        self.resent += frames

    def subscribe(self, subject: str, handler: MessageHandler) -> Unsubscribe:
        return self._subscriptions.subscribe(subject, handler)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_idle(self, timeout: float) -> bool:
        """Everything written is confirmed (JetStream: acknowledged) and nothing is held (bounded)."""
        deadline = self._loop.time() + timeout
        # An acknowledgement may let an outbox send more, so link and acks are checked in turn.
        while not (self._is_idle() and (self._acks is None or not self._acks.waiting)):
            left = deadline - self._loop.time()
            if left <= 0:
                return False
            if not self._is_idle():
                try:
                    await asyncio.wait_for(self._idle.wait(), left)
                except TimeoutError:
                    return False
            elif self._acks is not None and not await self._acks.wait_idle(left):
                return False
        return True

    async def close(self, timeout: float) -> None:
        """Stop taking writes, wait (bounded) until everything handed over is confirmed."""
        if self._nc.is_connected and not (self._is_idle() and (self._acks is None or not self._acks.waiting)):
            self._ping_now()
            await self.wait_idle(timeout)
        self._closing = True
        self._set_ready(False)
        if self._acks is not None:
            self._acks.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _send_queue(transport: Any) -> int:
    """Bytes in the kernel's send queue of the connection not yet taken by the peer (SIOCOUTQ;
    Linux). 0 where it cannot be read: the watch then sees only the transport's own buffer."""
    writer = getattr(transport, "_io_writer", None)
    sock = None if writer is None else writer.transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return int.from_bytes(raw, sys.byteorder, signed=True)

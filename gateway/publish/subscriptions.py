"""Per-stream subscriptions (the playback back-channel) without a task and a queue each.

nats-py gives every subscription an ``asyncio.Queue`` and a task that waits on it: 5.4 KiB per
stream (measured: RSS of 1000 idle streams with and without them) and a task wake-up per
message. A stream's back-channel needs neither: the message is turned into a provider frame and
sent, synchronously. So these subscriptions register a small stand-in in nats-py's subscription
table, whose "queue" calls the handler at once, and write ``SUB``/``UNSUB`` themselves.

nats-py internals relied on (nats-py 2.x, pinned <3), all in ``Client``: ``_subs`` (sid ->
subscription: its reader looks the sid up, counts ``_received``, checks ``_max_msgs``, ``_jsi``,
``_future`` and ``_pending_bytes_limit``, then calls ``_pending_queue.put_nowait(msg)``; after a
reconnect it sends ``SUB`` again for every entry, from ``_subject`` and ``_queue``), ``_sid`` (the
sid counter), and ``_transport`` (where ``SUB`` and ``UNSUB`` are written). A reconnect test in
``tests/integration/gateway/test_playback.py`` covers the resubscription.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

logger = logging.getLogger(__name__)

Handler = Callable[[bytes], None]


class Shim:
    """What nats-py's reader and reconnect logic read off a subscription, and nothing more: a
    subclass sets ``_subject`` and implements :meth:`put_nowait`, which nats-py calls from its
    reader for every message, synchronously."""

    __slots__ = ("_pending_queue", "_pending_size", "_received", "_subject")

    _queue = ""
    _max_msgs = 0
    _jsi = None
    _future = None
    _pending_bytes_limit = 0
    _wait_for_msgs_task = None
    _message_iterator = None
    _pending_next_msgs_calls: dict[int, Any] = {}  # noqa: RUF012 - read-only, always empty

    def __init__(self, subject: str) -> None:
        self._subject = subject
        self._received = 0
        self._pending_size = 0
        self._pending_queue = self

    def put_nowait(self, msg: Msg) -> None:
        raise NotImplementedError

    async def _drain(self) -> None:
        return None

    def register(self, client: Client) -> int:
        """Enter this shim in ``client``'s subscription table and send its ``SUB`` if connected
        (nats-py sends it again after every reconnect); returns its sid."""
        nc: Any = client
        nc._sid += 1
        sid: int = nc._sid
        nc._subs[sid] = self
        if client.is_connected:
            nc._transport.write(b"SUB %b %d\r\n" % (self._subject.encode(), sid))
        return sid


class _Subscription(Shim):
    __slots__ = ("_handler",)

    def __init__(self, subject: str, handler: Handler) -> None:
        super().__init__(subject)
        self._handler = handler

    def put_nowait(self, msg: Msg) -> None:
        self._pending_size = 0
        try:
            self._handler(msg.data)
        except Exception:  # a handler bug must not break nats-py's reader for everyone
            logger.exception("subscription handler failed on %s", self._subject)


class Subscriptions:
    def __init__(self, client: Client) -> None:
        self._nc = client

    def subscribe(self, subject: str, handler: Handler) -> Callable[[], None]:
        """Deliver every payload published on ``subject`` to ``handler`` (synchronously, in order);
        returns the function that unsubscribes."""
        nc: Any = self._nc
        sid = _Subscription(subject, handler).register(self._nc)

        def unsubscribe() -> None:
            if nc._subs.pop(sid, None) is not None:
                self._write(b"UNSUB %d\r\n" % sid)

        return unsubscribe

    def _write(self, command: bytes) -> None:
        # Not connected: nothing to write; nats-py subscribes every entry again on reconnect.
        if self._nc.is_connected:
            transport: Any = self._nc._transport
            transport.write(command)

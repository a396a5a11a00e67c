"""The outbox of a stream whose route publishes into a JetStream stream (``target.jetstream``).

Same contract as :class:`~gateway.publish.outbox.Outbox` (the shell cannot tell them apart), but
a message counts as delivered only once the stream has acknowledged storing it. Publishes are
pipelined: up to ``window`` messages per stream wait for their acknowledgement at once, so a
stream's throughput is ``window`` messages per round trip rather than one (a 20 ms stream needs
3 across a 50 ms round trip; the default window also empties an outage's backlog quickly). The
messages go out through the link's batched writes like core NATS messages, with a reply subject
from the process's :class:`~gateway.publish.acks.AckRouter`.

Every message carries ``Nats-Msg-Id`` (``{stream_id}:{track}:{Sgw-Seq}`` for audio,
``{stream_id}:event:{n}`` for the n-th event) and ``Nats-Expected-Stream``. A message whose
acknowledgement does not come within the timeout, or that was in flight when the connection
broke, is sent again with the same id, and the stream's duplicate window drops the copy. What
the stream refuses for good is dropped and counted by reason (``no_stream``: no stream, or
another one, captures the subject; ``stream_full``: a full stream that discards new messages;
``rejected``: anything else), audio in :attr:`dropped`, events through ``on_event_dropped``, and
logged once per stream and reason. "No responders" (nothing listens on the subject) may be a
stream leader election rather than a missing stream, so it is retried twice before it counts;
after that, this stream's next refusals of that kind count at once until one message is stored.

Bounds as in the core outbox: ``capacity`` audio frames held (queued or awaiting their
acknowledgement), past it the oldest queued one is dropped (``backpressure``) or the stream
closed; ``max_events`` events. The shell pauses the stream's socket while a quarter of the
capacity waits for a lagging stream (:mod:`gateway.transport.ackflow`).

Why not nats-py's ``publish_async``: it has no acknowledgement timeout or window per stream, and
per message it awaits a coroutine, builds the header block in Python and resolves a future
through its subscription task. Measured on the development machine (2 cores, nats-server on
loopback, 20,000 messages of 160 bytes with the gateway's headers, 128 awaiting acknowledgement,
process CPU from ``getrusage``): ``publish_async`` 35-39 us of CPU per message, this outbox 11-12
us (a good part of it nats-py's reader parsing the acknowledgements).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from gateway.publish.acks import EVENT_KIND, KIND_MASK
from gateway.publish.base import Publisher
from gateway.publish.outbox import BufferOverflow, EventFlood
from gateway.publish.wire import FrameTemplate, encode

_TRACKS: Final = ("inbound", "outbound")
_NO_RESPONDER_TRIES: Final = 3
"""Sends of one message answered "no responders" before it counts as refused (no stream)."""
_AUDIO: Final = 0
_EVENTS: Final = 1


def _no_event_count(reason: str) -> None:
    return None


class JetStreamOutbox:
    __slots__ = (
        "_event_heads",
        "_event_ids",
        "_events",
        "_heads",
        "_ids",
        "_inflight",
        "_link",
        "_on_event_dropped",
        "_prefix_lens",
        "_prefixes",
        "_q_heads",
        "_q_kinds",
        "_q_rests",
        "_refusals",
        "_refusing",
        "_resent",
        "_router",
        "_stream",
        "_waiting",
        "_window",
        "audio_held",
        "capacity",
        "drop_oldest",
        "dropped",
        "events_held",
        "held_per_track",
        "max_events",
        "overdraft",
    )

    def __init__(
        self,
        link: Publisher,
        subjects: Sequence[str],
        headers: Mapping[str, str],
        *,
        stream: str,
        stream_id: str,
        capacity: int,
        max_events: int,
        window: int,
        drop_oldest: bool = True,
        on_event_dropped: Callable[[str], None] = _no_event_count,
    ) -> None:
        self._link = link
        router = self._router = link.jetstream_acks()
        self._stream = stream
        expected = {**headers, "Nats-Expected-Stream": stream}
        templates = [FrameTemplate(subject, expected) for subject in subjects]
        # "HPUB <subject> <reply prefix>": the token and the rest of the command follow.
        self._heads = tuple(b"%b%b" % (t.head, router.prefix) for t in templates)
        self._prefixes = tuple(t.prefix for t in templates)
        self._prefix_lens = tuple(len(t.prefix) for t in templates)
        self._ids = tuple(f"{stream_id}:{track}:".encode() for track in _TRACKS)
        self._events = 0
        self._event_ids = f"{stream_id}:event:"
        # Messages not sent yet, in order: three parallel deques (see Outbox on why not tuples).
        self._q_heads: deque[bytes] = deque()
        self._q_rests: deque[bytes] = deque()
        self._q_kinds: deque[int] = deque()
        self._inflight: dict[int, bytes] = {}
        """Token -> the command after the token, in token (= sending) order."""
        self._event_heads: dict[int, bytes] = {}
        """Token -> head, for events in flight (audio heads are per track)."""
        self._refusals: dict[bytes, int] = {}
        """Message -> "no responders" answers so far (only messages that got one)."""
        self._resent: dict[int, float] = {}
        """Token -> when it was last sent again (only tokens sent again)."""
        self._refusing = [False, False]
        """Audio, events: refused for good lately; the next refusals count at once."""
        self._window = max(1, window)
        self._waiting = False
        self._on_event_dropped = on_event_dropped
        self.drop_oldest = drop_oldest
        self.capacity = capacity
        self.overdraft = False
        """True while the stream's socket is paused for its acknowledgements: frames of a read
        already made are kept beyond ``capacity`` (see :mod:`gateway.transport.ackflow`)."""
        self.max_events = max_events
        self.audio_held = 0
        self.events_held = 0
        self.held_per_track = [0, 0]
        """Audio frames not yet acknowledged, per track index."""
        self.dropped: dict[str, list[int]] = {}
        """Audio frames not stored: reason -> per track index."""

    # -- the per-frame path ------------------------------------------------------------------------

    def frame(self, track: int, seq: int, ts: int, payload: bytes) -> None:
        tail = b"%d\r\nSgw-Ts: %d\r\nNats-Msg-Id: %b%d\r\n\r\n" % (seq, ts, self._ids[track], seq)
        size = self._prefix_lens[track] + len(tail)
        rest = b" %d %d\r\n%b%b%b\r\n" % (size, size + len(payload), self._prefixes[track], tail, payload)
        if self.audio_held >= self.capacity and not self.overdraft:
            if not self.drop_oldest:
                raise BufferOverflow(f"buffer full ({self.capacity} frames): JetStream is not keeping up")
            self._evict_oldest_audio()
        self.audio_held += 1
        self.held_per_track[track] += 1
        if not self._q_rests and len(self._inflight) < self._window and self._link.ready:
            self._send(self._heads[track], rest, track)
        else:
            self._enqueue(self._heads[track], rest, track)

    def event(self, subject: str, body: bytes, headers: Mapping[str, str], *, final: bool = False) -> None:
        if not final and self.events_held >= self.max_events:
            raise EventFlood(f"more than {self.max_events} events held: the provider floods events")
        self._events += 1
        msg_headers = {
            **headers,
            "Nats-Expected-Stream": self._stream,
            "Nats-Msg-Id": f"{self._event_ids}{self._events}",
        }
        command = encode(subject, body, msg_headers)
        # "HPUB <subject>" then " <sizes>\r\n...": the reply goes in between.
        cut = len(b"HPUB ") + len(subject.encode())
        head, rest = b"%b %b" % (command[:cut], self._router.prefix), command[cut:]
        self.events_held += 1
        if not self._q_rests and len(self._inflight) < self._window and self._link.ready:
            self._send(head, rest, EVENT_KIND)
        else:
            self._enqueue(head, rest, EVENT_KIND)

    def _send(self, head: bytes, rest: bytes, kind: int) -> None:
        token = self._router.issue(self, kind)
        self._inflight[token] = rest
        if kind == EVENT_KIND:
            self._event_heads[token] = head
        self._link.write(None, b"%b%d%b" % (head, token, rest))

    def _enqueue(self, head: bytes, rest: bytes, kind: int) -> None:
        self._q_heads.append(head)
        self._q_rests.append(rest)
        self._q_kinds.append(kind)
        if not self._link.ready:
            self._wait_for_link()

    def _wait_for_link(self) -> None:
        if not self._waiting:
            self._waiting = True
            self._link.hold(self)

    def _pump(self, budget: int = 1 << 30) -> bool:
        """Send queued messages while the window and the link allow; True when nothing waits for
        the link (the queue is empty, or only the window holds it back)."""
        heads, rests, kinds, link = self._q_heads, self._q_rests, self._q_kinds, self._link
        while rests and len(self._inflight) < self._window and budget > 0:
            if not link.ready:
                self._wait_for_link()
                return False
            self._send(heads.popleft(), rests.popleft(), kinds.popleft())
            budget -= 1
        return budget > 0 or not rests or len(self._inflight) >= self._window

    # -- what the link and the router call ---------------------------------------------------------

    def drain(self, budget: int) -> bool:
        """The link is ready (again): send what waits, within the window."""
        done = self._pump(budget)
        if done:
            self._waiting = False
        return done

    def take_back(self, msgs: Sequence[bytes]) -> int:
        """Never called: JetStream messages are written without an owner; the router requeues them."""
        return 0

    def acked(self, token: int) -> None:
        rest = self._inflight.pop(token, None)
        if rest is None:
            return
        kind = token & KIND_MASK
        if self._refusals:
            self._refusals.pop(rest, None)
        if self._resent:
            self._resent.pop(token, None)
        if kind == EVENT_KIND:
            del self._event_heads[token]
            self.events_held -= 1
            self._refusing[_EVENTS] = False
        else:
            self.audio_held -= 1
            self.held_per_track[kind] -= 1
            self._refusing[_AUDIO] = False
        if self._q_rests:
            self._pump()

    def refused(self, token: int, reason: str, final: bool) -> None:
        rest = self._inflight.get(token)
        if rest is None:
            return
        kind = token & KIND_MASK
        group = _EVENTS if kind == EVENT_KIND else _AUDIO
        if not final and not self._refusing[group]:
            tries = self._refusals.get(rest, 0) + 1
            if tries < _NO_RESPONDER_TRIES:
                # Stays in flight, awaited again: the timeout sends it again under the same token.
                self._refusals[rest] = tries
                self._router.await_again(token, self)
                return
        del self._inflight[token]
        self._refusals.pop(rest, None)
        self._resent.pop(token, None)
        self._refusing[group] = True
        what = "events" if group == _EVENTS else "audio frames"
        self._router.report(self._stream, what, reason, "JetStream did not store them")
        if kind == EVENT_KIND:
            del self._event_heads[token]
            self.events_held -= 1
            self._on_event_dropped(reason)
        else:
            self.audio_held -= 1
            self.held_per_track[kind] -= 1
            self.count_drop(kind, reason)
        if self._q_rests:
            self._pump()

    def expire(self, before: int, now: float, timeout: float) -> None:
        """Unanswered for a whole timeout: send those messages again, under the same reply subject,
        so that the answer to either copy settles it."""
        link = self._link
        if not link.ready:
            return  # an outage requeues them; a saturated link is asked again next sweep
        resent, audio = self._resent, 0
        for token, rest in self._inflight.items():
            if token >= before:
                break
            if now - resent.get(token, -timeout) < timeout:
                continue
            resent[token] = now
            kind = token & KIND_MASK
            head = self._event_heads[token] if kind == EVENT_KIND else self._heads[kind]
            link.write(None, b"%b%d%b" % (head, token, rest))
            if kind != EVENT_KIND:
                audio += 1
        self._router.count_resent(audio)

    def requeue(self) -> None:
        """The connection broke: what was in flight is sent again, first, once the link is back."""
        if self._inflight:
            self._to_front(list(self._inflight))
        if self._q_rests:
            self._wait_for_link()

    def _to_front(self, tokens: list[int]) -> None:
        router, inflight = self._router, self._inflight
        heads, rests, kinds = self._q_heads, self._q_rests, self._q_kinds
        audio = 0
        for token in reversed(tokens):
            router.release(token)
            self._resent.pop(token, None)
            kind = token & KIND_MASK
            rests.appendleft(inflight.pop(token))
            kinds.appendleft(kind)
            if kind == EVENT_KIND:
                heads.appendleft(self._event_heads.pop(token))
            else:
                heads.appendleft(self._heads[kind])
                audio += 1
        router.count_resent(audio)

    def backlog(self) -> int:
        """Audio frames held while the link takes writes: the stream's acknowledgements are behind.
        0 during an outage, when holding the audio is the buffer's job, as on core NATS."""
        return self.audio_held if self._link.ready else 0

    # -- bounds and accounting ---------------------------------------------------------------------

    def _evict_oldest_audio(self) -> None:
        kinds = self._q_kinds
        index = next((i for i, kind in enumerate(kinds) if kind != EVENT_KIND), -1)
        if index >= 0:
            kind = kinds[index]
            del self._q_heads[index], self._q_rests[index], kinds[index]
        else:  # every held frame is in flight (a window as large as the buffer): give up the oldest
            token = next(t for t in self._inflight if t & KIND_MASK != EVENT_KIND)
            self._refusals.pop(self._inflight.pop(token), None)
            self._resent.pop(token, None)
            self._router.release(token)
            kind = token & KIND_MASK
        self.audio_held -= 1
        self.held_per_track[kind] -= 1
        self.count_drop(kind, "backpressure")

    def count_drop(self, track: int, reason: str, n: int = 1) -> None:
        per_track = self.dropped.get(reason)
        if per_track is None:
            per_track = self.dropped[reason] = [0, 0]
        per_track[track] += n

    def dropped_per_track(self) -> list[int]:
        totals = [0, 0]
        for per_track in self.dropped.values():
            totals[0] += per_track[0]
            totals[1] += per_track[1]
        return totals

    @property
    def holding(self) -> bool:
        return bool(self._q_rests) or bool(self._inflight)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    def seal(self) -> None:
        """The stream has ended; what it holds still goes out (acknowledgements drive it)."""

    def abandon(self, reason: str) -> int:
        """Give up what is held or unacknowledged (shutdown deadline): audio counted as dropped."""
        abandoned = 0
        for kind in self._q_kinds:
            if kind != EVENT_KIND:
                self.count_drop(kind, reason)
                abandoned += 1
        for token in self._inflight:
            self._router.release(token)
            kind = token & KIND_MASK
            if kind != EVENT_KIND:
                self.count_drop(kind, reason)
                abandoned += 1
        self._q_heads.clear()
        self._q_rests.clear()
        self._q_kinds.clear()
        self._inflight.clear()
        self._event_heads.clear()
        self._refusals.clear()
        self._resent.clear()
        self.audio_held = self.events_held = 0
        self.held_per_track = [0, 0]
        self._waiting = False
        self._link.forget(self)
        return abandoned

"""One provider WebSocket from upgrade to close: the object that owns a stream's session and outbox.

picows calls :meth:`ProviderStream.on_ws_frame` straight from its read buffer. The connected path
is synchronous from there to the NATS batch: decode (the dialect), count (the session), encode and
hand over (the outbox). Everything else (lifecycle events, errors, timeouts, closes) goes through
the session's actions, which this class carries out. A bug in this stream's handling closes this
stream with 1011, publishes its ``error`` and ``stopped``, and logs one traceback; other streams
never notice. The registry's sweep calls :meth:`ProviderStream.check` for the start and receive timeouts and
the heartbeat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import msgspec
from multidict import CIMultiDict
from opentelemetry.trace import Span
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from gateway.errors import CloseCode, GatewayError, LocalProtocolError, RemoteProtocolError, ShuttingDown
from gateway.observability.logging import StreamLogger
from gateway.protocol.actions import Action, Close, EventOut, FrameOut, Started, StreamInfo
from gateway.protocol.auth import NO_CREDENTIALS, Credentials
from gateway.protocol.dialects import create
from gateway.protocol.dialects.base import Decoded, Dialect, Outgoing, as_events, binary_refused
from gateway.protocol.dialects.detect import DEFAULT, detect
from gateway.protocol.events import InboundEvent, Media
from gateway.protocol.session import State, StreamSession, TrackStats
from gateway.publish.base import StreamOutbox
from gateway.publish.fanout import FanoutOutbox
from gateway.publish.jetstream import JetStreamOutbox
from gateway.publish.outbox import EventFlood, Outbox
from gateway.publish.wire import FrameTemplate
from gateway.transport.ackflow import AckFlow
from gateway.transport.context import GatewayContext
from gateway.transport.pacer import Pacer
from gateway.transport.playback import forward
from gateway.transport.transcode import frame_sink, subject_sets

logger = logging.getLogger(__name__)

_TEXT: Final = WSMsgType.TEXT
_BINARY: Final = WSMsgType.BINARY
_TRACK_INDEX: Final = {"inbound": 0, "outbound": 1}
_JSON: Final = msgspec.json.Encoder()
_CLOSE_LINGER: Final = 2.0
"""Seconds a peer has to answer our close frame before the connection is cut."""
_NO_HEADERS: Final = CIMultiDict[str]()
"""Stands in for the upgrade's headers once the stream is connected (shared, never written)."""
_SAMPLE_MASK: Final = 63
"""One frame in 64 (per track) is timed for ``sgw_publish_latency_seconds``."""


class ProviderStream(WSListener):
    # Slots: picows calls in for every frame, and slot reads skip the instance dict.
    __slots__ = (
        "_active_at",
        "_close_code",
        "_close_reason",
        "_close_sent_at",
        "_binary",
        "_connected_at",
        "_dialect",
        "_fragment_type",
        "_fragments",
        "_frame",
        "_latency",
        "_limit",
        "_messages",
        "_pacer",
        "_paused",
        "_paused_by",
        "_ackflow",
        "_pending",
        "_pinged",
        "_seen_at_check",
        "_span",
        "_text",
        "_unsubscribe_play",
        "ctx",
        "outbox",
        "route",
        "session",
        "socket_open",
        "auth_failure",
        "transport",
    )

    def __init__(
        self,
        ctx: GatewayContext,
        *,
        path_key: str | None,
        credentials: Credentials = NO_CREDENTIALS,
        provider: str | None = None,
    ) -> None:
        super().__init__()
        self.ctx = ctx
        self.auth_failure = credentials.failure
        """``sgw_auth_failures_total`` labels should ``start`` refuse these credentials (no secret)."""
        self.session = StreamSession(
            tables=ctx.routes.snapshot,
            config=ctx.session_config,
            path_key=path_key,
            credentials=credentials,
            traceparent=self._open_span,
        )
        self.outbox: StreamOutbox | None = None
        self.route = "unrouted"
        self.transport: WSTransport | None = None
        # The dialect: forced by ``?provider=``, else chosen by the first text frame (_detect).
        self._dialect: Dialect | None = None
        self._text: Callable[[str], Decoded] = self._detect
        self._binary: Callable[[bytes], Decoded] = _binary_before_detection
        self._pending: str | None = None
        if provider is not None:
            self._use(create(provider, forced=True))
        self._pacer: Pacer | None = None
        self._paused = False
        self._paused_by = [False, False]
        """Who wants the socket paused: [the link (every stream), this stream's acknowledgements]."""
        self._ackflow: AckFlow | None = None
        self._fragments: bytearray | None = None
        self._limit = ctx.settings.websocket.max_message_bytes
        self._fragment_type = _TEXT
        self._messages = 0
        """Messages other than media (media are counted by the session): watchdog activity."""
        self._frame: Callable[[int, int, int, bytes], None] = _no_outbox
        self._seen_at_check = -1
        self._pinged = False
        self._active_at = self._connected_at = 0.0
        self._span: Span | None = None
        self._close_code: int | None = None
        self._close_reason = ""
        self._close_sent_at = 0.0
        self._unsubscribe_play: Callable[[], None] | None = None
        self._latency = ctx.metrics.publish_latency.labels("unrouted")
        self.socket_open = False

    # -- what the metrics collector reads ------------------------------------------------------------

    @property
    def track_counts(self) -> tuple[TrackStats, TrackStats]:
        return self.session.track_pair

    @property
    def published(self) -> list[int]:
        """Frames handed to NATS: received, less those still held and those dropped (counted
        here rather than per frame)."""
        outbox = self.outbox
        if outbox is None:
            return [0, 0]
        dropped = outbox.dropped_per_track()
        stats = self.session.track_pair
        return [stats[i].seq - outbox.held_per_track[i] - dropped[i] for i in (0, 1)]

    @property
    def dropped(self) -> dict[str, list[int]]:
        return self.outbox.dropped if self.outbox is not None else {}

    @property
    def _log(self) -> logging.Logger | StreamLogger:
        """A logger with the stream's ids, made when a line is logged (a few per stream) rather
        than kept on every stream (memory per idle stream)."""
        info = self.session.info
        if info is None:
            return logger
        return StreamLogger(logger, {"call_id": info.call_id, "stream_id": info.stream_id, "route": self.route})

    # -- picows callbacks ----------------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        # picows keeps the upgrade request and response for the connection's life; nothing reads
        # their headers after the upgrade (upgrade.py reads them before). Dropping them: 12.2 ->
        # 10.2 MiB per 1000 idle streams (python -m bench, 1000 idle streams, 2 runs each).
        for message in (transport.request, transport.response):
            if message is not None:
                message.headers = _NO_HEADERS
        self.socket_open = True
        self.ctx.registry.add(self)
        self.ctx.metrics.connections_active.inc()
        self._connected_at = self._active_at = time.monotonic()

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if transport.is_close_frame_sent:
            # Closing (our close, or picows' after a bad frame): nothing more is taken, and the
            # peer's close frame ends the connection (see _close).
            if frame.msg_type is WSMsgType.CLOSE:
                transport.disconnect()
            return
        try:
            kind = frame.msg_type
            if (
                (kind is _TEXT or kind is _BINARY)
                and frame.fin
                and frame.payload_size <= self._limit
                and not frame.rsv1
                and self._fragments is None
            ):
                # A str, not the raw buffer: RFC 6455 requires valid UTF-8 in text frames, and
                # msgspec decodes a str faster than a memoryview (0.69 against 0.88 us per frame).
                if kind is _TEXT:
                    event = self._text(frame.get_payload_as_utf8_text())
                else:
                    event = self._binary(frame.get_payload_as_bytes())
                session = self.session
                if type(event) is Media and session.streaming:
                    stats = session.media(event)
                    self._frame(stats.index, stats.seq, stats.ts, event.payload)
                    if not stats.seq & _SAMPLE_MASK:
                        self.ctx.publisher.time_next_write(self._latency)
                    return
                self._deliver(event)
            else:
                self._messages += 1
                self._other_frame(frame)
        except GatewayError as err:  # from the core, or the outbox's bounds
            self._fail(err)
        except UnicodeDecodeError:
            self._fail(_NOT_UTF8)
        except Exception as exc:  # a bug must end this stream only, and say so
            self._internal_error(exc)

    def _deliver(self, decoded: Decoded) -> None:
        """Whatever the fast path did not take: lifecycle events, and several events from one frame
        (a stereo frame's two tracks, frames a reorder window releases)."""
        for event in as_events(decoded):
            session = self.session
            if type(event) is Media and session.streaming:
                stats = session.media(event)
                self._frame(stats.index, stats.seq, stats.ts, event.payload)
            else:
                self._messages += 1
                self._execute(session.receive(event, time.time()))

    # -- the dialect ---------------------------------------------------------------------------------

    def _use(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._text = dialect.text
        self._binary = dialect.binary

    def _detect(self, data: str) -> Decoded:
        """The first text frames, until one says which provider this is (a bare ``connected`` does
        not: it is kept and decoded with the frame that does)."""
        name = detect(data)
        pending = self._pending
        if name is None and pending is None:
            self._pending = data
            return ()
        self._pending = None
        dialect = create(name or DEFAULT, forced=False)
        self._use(dialect)
        if pending is None:
            return dialect.text(data)
        return _joined(dialect.text(pending), dialect.text(data))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.socket_open = False
        handshake: Any = transport.close_handshake  # None when no close frame went either way
        sent = handshake.sent if handshake is not None else None
        received = handshake.recv if handshake is not None else None
        if self._close_code is None and sent is not None and not (received is not None and handshake.recv_then_sent):
            # picows refused a frame (RFC 6455 violation, oversized frame) and closed the socket.
            self._fail(_websocket_error(int(sent.code.value)))
        if self.session.state is not State.CLOSED:
            if self._dialect is not None and self._close_code is None:
                self._deliver(self._dialect.close())  # frames the dialect still held, then the end
            self._execute(self.session.finish("closed", time.time()))
        if self._close_code is None:
            self._close_code = int(received.code.value) if received is not None else CloseCode.ABNORMAL
        if self._unsubscribe_play is not None:
            unsubscribe, self._unsubscribe_play = self._unsubscribe_play, None
            unsubscribe()
        if self._pacer is not None:
            # Back-channel frames lost to the pacer's bound, or still waiting at the end: counted.
            lost = self._pacer.dropped + len(self._pacer)
            self._pacer.stop()
            if lost:
                self.ctx.metrics.playback_messages.labels("dropped").inc(lost)
        if self._ackflow is not None:
            self._ackflow.stop()
        if self.outbox is not None:
            self.outbox.seal()
        self._finish_observability()
        self.ctx.metrics.connections_active.dec()
        self.ctx.registry.socket_closed(self)

    # -- frames other than a whole text message --------------------------------------------------------

    def _other_frame(self, frame: WSFrame) -> None:
        kind = frame.msg_type
        if frame.rsv1 or frame.rsv2 or frame.rsv3:
            raise RemoteProtocolError(
                "reserved bits set without an extension", reason="ws_error", close_code=CloseCode.PROTOCOL_ERROR
            )
        if kind is WSMsgType.CLOSE:
            code = frame.get_close_code()
            if self.transport is not None and not self.transport.is_close_frame_sent:
                self.transport.send_close(code if code is not WSCloseCode.NO_INFO else WSCloseCode.OK)
                self.transport.disconnect()
            return
        if kind is WSMsgType.PONG or kind is WSMsgType.PING:
            return  # picows answers PINGs itself
        limit = self._limit
        if frame.payload_size > limit:
            raise RemoteProtocolError("message too big", reason="too_big", close_code=CloseCode.MESSAGE_TOO_BIG)
        if kind is WSMsgType.CONTINUATION:
            if self._fragments is None:
                raise RemoteProtocolError(
                    "continuation frame without a message", reason="ws_error", close_code=CloseCode.PROTOCOL_ERROR
                )
            self._fragments += frame.get_payload_as_memoryview()
        elif self._fragments is not None:
            raise RemoteProtocolError(
                "new message inside a fragmented one", reason="ws_error", close_code=CloseCode.PROTOCOL_ERROR
            )
        else:
            self._fragments = bytearray(frame.get_payload_as_memoryview())
            self._fragment_type = kind
        if len(self._fragments) > limit:
            raise RemoteProtocolError("message too big", reason="too_big", close_code=CloseCode.MESSAGE_TOO_BIG)
        if not frame.fin:
            return
        data, self._fragments = bytes(self._fragments), None
        self._deliver(self._text(data.decode()) if self._fragment_type is _TEXT else self._binary(data))

    # -- actions -------------------------------------------------------------------------------------

    def _execute(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case EventOut():
                    self._event(action)
                case Started(info=info):
                    self._started(info)
                case FrameOut(track=track, seq=seq, ts=ts, payload=payload) if self.outbox is not None:
                    self._frame(_TRACK_INDEX[track], seq, ts, payload)
                case Close(code=code, reason=reason):
                    self._close(code, reason)

    def _event(self, event: EventOut) -> None:
        outbox = self.outbox
        if outbox is None:
            return  # events exist only after start, when the outbox does
        if event.kind == "stopped":
            self._fill_dropped(event)
        outbox.event(event.subject, _JSON.encode(event.body), event.headers, final=event.final)
        self.ctx.metrics.events_published.labels(event.kind).inc()
        if self._span is not None and event.kind in ("dtmf", "mark"):
            attrs = {k: v for k, v in event.body.items() if k in ("digit", "duration", "name")}
            self.ctx.tracing.event(self._span, event.kind, attrs)

    def _fill_dropped(self, event: EventOut) -> None:
        if self.outbox is None:
            return
        tracks = event.body.get("tracks", {})
        for index, dropped in enumerate(self.outbox.dropped_per_track()):
            name = ("inbound", "outbound")[index]
            if name in tracks:
                tracks[name]["dropped"] = dropped
            elif dropped:
                tracks[name] = {"frames": 0, "gaps": 0, "duplicates": 0, "reordered": 0, "dropped": dropped}

    def _started(self, info: StreamInfo) -> None:
        ctx = self.ctx
        settings = ctx.settings.buffer
        route = self.route = info.route.metric_label
        capacity, max_events = settings.max_frames, settings.max_events
        drop_oldest = settings.overflow == "drop_oldest"
        stream = info.route.jetstream_stream
        if stream is not None:
            self.outbox = JetStreamOutbox(
                ctx.publisher,
                info.audio_subjects,
                info.frame_headers,
                stream=stream,
                stream_id=info.stream_id,
                capacity=capacity,
                max_events=max_events,
                window=ctx.settings.nats.jetstream_window,
                drop_oldest=drop_oldest,
                on_event_dropped=self._event_dropped,
            )
        elif info.copies:
            self.outbox = FanoutOutbox(
                ctx.publisher, subject_sets(info), capacity=capacity, max_events=max_events, drop_oldest=drop_oldest
            )
        else:
            templates = [FrameTemplate(subject, info.frame_headers) for subject in info.audio_subjects]
            self.outbox = Outbox(
                ctx.publisher, templates, capacity=capacity, max_events=max_events, drop_oldest=drop_oldest
            )
        self._frame = frame_sink(info, self.outbox)  # a plain route's: outbox.frame itself
        if isinstance(self.outbox, JetStreamOutbox):
            self._frame = self._ackflow = AckFlow(
                self._frame,
                self.outbox,
                partial(self._pause_for, 1),
                max_pause=settings.max_pause,
                on_pause=ctx.metrics.stream_pauses.labels(route).inc,
            )
        self._latency = ctx.metrics.publish_latency.labels(route)
        m = ctx.metrics
        m.streams_started.labels(route, info.provider).inc()
        m.streams_active.labels(route).inc()
        self._log.info(
            "stream started: control_id=%s codec=%s tracks=%s", info.control_id, info.codec.label, ",".join(info.tracks)
        )
        if info.playback_subject is not None:
            self._unsubscribe_play = ctx.publisher.subscribe(info.playback_subject, self._on_play)

    def _event_dropped(self, reason: str) -> None:
        """A JetStream route's stream refused an event for good (logged once by the router)."""
        self.ctx.metrics.events_dropped.labels(reason).inc()

    def _on_play(self, data: bytes) -> None:
        info = self.session.info
        if info is not None and info.playback_subject is not None and self._dialect is not None:
            counter = self.ctx.metrics.playback_messages
            forward(
                data,
                encode=partial(self._dialect.encode, info.stream_id),
                send=self._send,
                counter=counter,
                subject=info.playback_subject,
            )

    def _send(self, frame: Outgoing) -> bool:
        """One frame to the provider, through the pacer when the dialect paces (Vonage), or when
        paced frames are still waiting (order is kept)."""
        if frame.paced_ms or (self._pacer is not None and len(self._pacer)):
            if self._pacer is None:
                self._pacer = Pacer(self._send_now)
            return self._pacer.put(frame)
        return self._send_now(frame)

    def _send_now(self, frame: Outgoing) -> bool:
        transport = self.transport
        if transport is None or not self.socket_open or not self.session.streaming or transport.is_close_frame_sent:
            return False
        transport.send(_BINARY if frame.binary else _TEXT, frame.data)
        return True

    def _close(self, code: int, reason: str) -> None:
        if self._close_code is None:
            self._close_code = code
            self._close_reason = self._close_reason or reason
        transport = self.transport
        if transport is not None and self.socket_open and not transport.is_close_frame_sent:
            # The TCP connection stays open until the peer answers with its close frame (or
            # _CLOSE_LINGER passes, see check): closing it at once while the peer is still
            # sending makes the kernel reset it, and a reset discards our close frame on the
            # peer's side, so the provider would see 1006 instead of the reason.
            transport.send_close(WSCloseCode(code), reason.encode()[:123])
            self._close_sent_at = time.monotonic()

    def _fail(self, err: GatewayError) -> None:
        ctx = self.ctx
        if isinstance(err, RemoteProtocolError):
            ctx.metrics.protocol_errors.labels(err.reason).inc()
            if isinstance(err, EventFlood):  # the event that did not fit is the one refused
                ctx.metrics.events_dropped.labels("flood").inc()
        elif err.reason == "unauthorized":
            ctx.metrics.auth_failures.labels(*self.auth_failure).inc()
        self._log.info("closing stream: %s (%s, code %d)", err.message, err.reason, int(err.close_code))
        if self._span is not None:
            ctx.tracing.event(self._span, "error", {"reason": err.reason, "code": int(err.close_code)})
        self._close_reason = self._close_reason or err.reason
        self._execute(self.session.fail(err, time.time()))

    def _internal_error(self, exc: Exception) -> None:
        # One traceback, counted; the consumers get ``error`` and ``stopped``, the provider 1011.
        self._log.error("internal error in stream handler", exc_info=exc)
        self.ctx.metrics.internal_errors.inc()
        try:
            self._fail(LocalProtocolError(f"internal error: {type(exc).__name__}", reason="internal"))
        except Exception:  # noqa: BLE001 - failing to report must not hide the first error
            self._close(CloseCode.INTERNAL_ERROR, "internal error")

    def shutdown(self) -> None:
        """Drain deadline passed: end the stream with 1001 (its ``stopped`` says ``shutdown``)."""
        err = ShuttingDown("server shutting down")
        self._execute(
            self.session.finish("shutdown", time.time(), code=int(err.close_code), close_reason=err.close_message)
        )

    def pause_reading(self, paused: bool) -> None:
        """The link stopped (or resumed) taking writes (the registry calls this on every stream)."""
        self._pause_for(0, paused)

    def _pause_for(self, reason: int, paused: bool) -> None:
        """The socket reads only while neither the link nor this stream's acknowledgements hold it."""
        self._paused_by[reason] = paused
        paused = self._paused_by[0] or self._paused_by[1]
        transport = self.transport
        if transport is None or not self.socket_open or paused == self._paused:
            return
        self._paused = paused
        if paused:
            transport.underlying_transport.pause_reading()
        else:
            transport.underlying_transport.resume_reading()

    # -- the watchdog --------------------------------------------------------------------------------

    def check(self, now: float) -> None:
        """Called by the registry's sweep (one timer for every stream of the process, instead of
        a timeout per receive or a timer per stream: 0.6 KiB per idle stream): the start and
        receive timeouts, and the heartbeat (a PING when the peer has been silent for
        ``websocket.heartbeat``; another silent heartbeat ends it)."""
        transport = self.transport
        if not self.socket_open or transport is None:
            return
        if transport.is_close_frame_sent:
            if now - self._close_sent_at >= _CLOSE_LINGER:
                transport.disconnect()  # the peer never answered our close
            return
        if self.session.state is State.CLOSED:
            return
        ws = self.ctx.settings.websocket
        pairs = self.session.track_pair
        seen = self._messages + pairs[0].seq + pairs[1].seq
        if seen != self._seen_at_check or self._paused:
            # While we do not read (back-pressure) the peer's silence is ours, not its.
            self._seen_at_check = seen
            self._active_at = now
            self._pinged = False
        if self.session.state is State.AWAIT_START:
            timeout, reason = ws.start_timeout, "start_timeout"
            idle = now - self._connected_at
        else:
            timeout, reason = ws.receive_timeout, "receive_timeout"
            idle = now - self._active_at
        if idle >= timeout:
            self._fail(RemoteProtocolError(f"no message within {timeout:g}s ({reason})", reason=reason))
            return
        if ws.heartbeat > 0 and now - self._active_at >= ws.heartbeat:
            if self._pinged:  # a whole heartbeat without an answer to our PING: the peer is gone
                self._fail(RemoteProtocolError("no answer to a ping", reason="heartbeat_timeout"))
                transport.disconnect(graceful=False)
                return
            transport.send_ping()
            self._pinged = True

    # -- observability -------------------------------------------------------------------------------

    def _open_span(self, info: StreamInfo) -> str:
        """Called by the session when ``start`` is accepted: opens the stream's span."""
        self._span, traceparent = self.ctx.tracing.start_stream(
            {
                "sgw.call_id": info.call_id,
                "sgw.stream_id": info.stream_id,
                "sgw.control_id": info.control_id,
                "sgw.route": info.route.metric_label,
                "sgw.provider": info.provider,
                "sgw.codec": info.codec.label,
                "sgw.tracks": ",".join(info.tracks),
            }
        )
        self.ctx.tracing.event(self._span, "start")
        return traceparent

    def _finish_observability(self) -> None:
        m = self.ctx.metrics
        session = self.session
        code = self._close_code if self._close_code is not None else CloseCode.ABNORMAL
        reason = self._close_reason or (session.stop_reason or "closed")
        m.streams_closed.labels(self.route, str(code), reason).inc()
        if session.ignored:
            m.messages_ignored.labels("unknown_event").inc(session.ignored)
        if session.info is None:
            return
        m.streams_active.labels(self.route).dec()
        if self._span is not None:
            error = reason if session.stop_reason == "error" else None
            self.ctx.tracing.event(self._span, "stop", {"reason": session.stop_reason or reason})
            self.ctx.tracing.end(self._span, reason=session.stop_reason or reason, error=error)
            self._span = None
        frames = {t: s.frames for t, s in session.tracks.items() if s.frames}
        self._log.info("stream ended: reason=%s code=%s frames=%s", session.stop_reason, code, frames)


def _binary_before_detection(data: bytes) -> Decoded:
    raise binary_refused()  # every provider that sends binary audio announces it in a text frame first


def _joined(first: Decoded, second: Decoded) -> tuple[InboundEvent, ...]:
    return as_events(first) + as_events(second)


def _no_outbox(track: int, seq: int, ts: int, payload: bytes) -> None:
    raise LocalProtocolError("media before the stream's outbox exists")


_NOT_UTF8: Final = RemoteProtocolError(
    "text frame is not UTF-8", reason="malformed", close_code=CloseCode.INVALID_PAYLOAD
)


def _websocket_error(code: int) -> RemoteProtocolError:
    """picows rejected a frame and has already sent ``code`` and closed the socket."""
    if code == CloseCode.MESSAGE_TOO_BIG:
        return RemoteProtocolError("message too big", reason="too_big", close_code=CloseCode.MESSAGE_TOO_BIG)
    try:
        close_code = CloseCode(code)
    except ValueError:
        close_code = CloseCode.PROTOCOL_ERROR
    return RemoteProtocolError("websocket protocol violation", reason="ws_error", close_code=close_code)

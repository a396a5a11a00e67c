"""One provider WebSocket carried from upgrade to close: the thin shell around the session.

The loop is: receive a message, decode it with the dialect, feed the session, carry out the actions
(buffer audio and events, bind observability on ``Started``, close on ``Close``). Errors from the
core become a close with their code; only this socket is affected. The pump keeps publishing after
the socket is gone, until its buffer is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import WSMsgType, web
from opentelemetry.trace import Span
from prometheus_client import Counter

from gateway.errors import CloseCode, GatewayError, LocalProtocolError, RemoteProtocolError, ShuttingDown
from gateway.observability.logging import StreamLogger
from gateway.protocol.actions import Action, AudioOut, Close, EventOut, Started, StreamInfo
from gateway.protocol.dialects import twilio
from gateway.protocol.session import State, StreamSession
from gateway.transport.context import GatewayContext
from gateway.transport.playback import Playback
from gateway.transport.pump import StreamPump

logger = logging.getLogger(__name__)


class ProviderStream:
    def __init__(
        self, ctx: GatewayContext, ws: web.WebSocketResponse, *, path_key: str | None, token: str | None
    ) -> None:
        self.ctx = ctx
        self.token_present = token is not None
        self.ws = ws
        self.session = StreamSession(
            tables=ctx.routes.snapshot,
            config=ctx.session_config(),
            path_key=path_key,
            token=token,
            traceparent=self.traceparent_for,
        )
        settings = ctx.settings
        self.pump = StreamPump(
            ctx.publisher,
            ctx.metrics,
            capacity=settings.buffer.max_frames,
            overflow=settings.buffer.overflow,
            max_events=settings.buffer.max_events,
        )
        self._span: Span | None = None
        self._route = "unrouted"
        self._received: dict[str, Counter] = {}
        self._bytes: dict[str, Counter] = {}
        self._log: logging.Logger | StreamLogger = logger
        self._close_code: int | None = None
        self._close_reason = ""
        self._playback: Playback | None = None

    # -- the loop ---------------------------------------------------------------------------------

    async def run(self) -> None:
        ws = self.ws
        session = self.session
        ws_cfg = self.ctx.settings.websocket
        decode = twilio.decode
        self.pump.start()
        try:
            while not ws.closed:
                timeout = ws_cfg.start_timeout if session.state is State.AWAIT_START else ws_cfg.receive_timeout
                try:
                    msg = await ws.receive(timeout=timeout)
                except TimeoutError:
                    reason = "start_timeout" if session.state is State.AWAIT_START else "receive_timeout"
                    await self._fail(RemoteProtocolError(f"no message within {timeout:g}s ({reason})", reason=reason))
                    break
                kind = msg.type
                if kind is WSMsgType.TEXT:
                    try:
                        if await self._execute(session.receive(decode(msg.data), time.time())):
                            break
                    except GatewayError as err:  # from the core, or the buffer's overflow policy
                        await self._fail(err)
                        break
                elif kind is WSMsgType.BINARY:
                    await self._fail(
                        RemoteProtocolError(
                            "binary frames are not part of this protocol",
                            reason="binary_frame",
                            close_code=CloseCode.UNSUPPORTED_DATA,
                        )
                    )
                    break
                elif kind is WSMsgType.ERROR:
                    await self._fail(_websocket_error(ws.exception()))
                    break
                else:  # CLOSE, CLOSING, CLOSED: the provider (or the network) ended the socket
                    await self._execute(session.finish("closed", time.time()))
                    self._close_code = ws.close_code
                    break
        except asyncio.CancelledError:
            await self._execute(session.finish("cancelled", time.time()))
            raise
        except Exception as exc:  # noqa: BLE001 - a bug must end this stream only, and say so
            # One traceback, counted; the consumers get ``error`` and ``stopped``, the provider 1011.
            self._log.exception("internal error in stream handler")
            self.ctx.metrics.internal_errors.inc()
            await self._fail(LocalProtocolError(f"internal error: {type(exc).__name__}", reason="internal"))
        finally:
            if session.state is not State.CLOSED:
                await self._execute(session.finish("closed", time.time()))
            if self._playback is not None:
                await self._playback.stop()
            self._finish_observability()

    async def shutdown(self) -> None:
        """Drain deadline passed: end the stream with 1001 (its ``stopped`` says ``shutdown``)."""
        err = ShuttingDown("server shutting down")
        actions = self.session.finish("shutdown", time.time(), code=int(err.close_code), close_reason=err.close_message)
        await self._execute(actions)

    async def _fail(self, err: GatewayError) -> None:
        ctx = self.ctx
        if isinstance(err, RemoteProtocolError):
            ctx.metrics.protocol_errors.labels(err.reason).inc()
        elif err.reason == "unauthorized":
            ctx.metrics.auth_failures.labels("invalid" if self.token_present else "missing").inc()
        self._log.info("closing stream: %s (%s, code %d)", err.message, err.reason, int(err.close_code))
        if self._span is not None:
            ctx.tracing.event(self._span, "error", {"reason": err.reason, "code": int(err.close_code)})
        self._close_reason = err.reason
        await self._execute(self.session.fail(err, time.time()))

    # -- actions ----------------------------------------------------------------------------------

    async def _execute(self, actions: list[Action]) -> bool:
        """Carry out actions; True when the socket was closed."""
        closed = False
        for action in actions:
            if type(action) is AudioOut:
                self._received[action.track].inc()
                self._bytes[action.track].inc(len(action.payload))
                self.pump.put_audio(action)
            elif isinstance(action, EventOut):
                self.pump.put_event(action)
                if self._span is not None and action.kind in ("dtmf", "mark"):
                    attrs = {k: v for k, v in action.body.items() if k in ("digit", "duration", "name")}
                    self.ctx.tracing.event(self._span, action.kind, attrs)
            elif isinstance(action, Started):
                self._on_started(action.info)
                await self._start_playback(action.info)
            elif isinstance(action, Close):
                closed = True
                if self._close_code is None:
                    self._close_code = action.code
                    self._close_reason = self._close_reason or action.reason
                if not self.ws.closed:
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await self.ws.close(code=action.code, message=action.reason.encode()[:123])
        return closed

    def traceparent_for(self, info: StreamInfo) -> str:
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

    def _on_started(self, info: StreamInfo) -> None:
        m = self.ctx.metrics
        route = self._route = info.route.metric_label
        self._received = {t: m.frames_received.labels(route, t) for t in ("inbound", "outbound")}
        self._bytes = {t: m.bytes_received.labels(route, t) for t in ("inbound", "outbound")}
        self.pump.bind(route, info.route.jetstream_stream)
        m.streams_started.labels(route, info.provider).inc()
        m.streams_active.labels(route).inc()
        self._log = StreamLogger(logger, {"call_id": info.call_id, "stream_id": info.stream_id, "route": route})
        self._log.info(
            "stream started: control_id=%s codec=%s tracks=%s",
            info.control_id,
            info.codec.label,
            ",".join(info.tracks),
        )

    async def _start_playback(self, info: StreamInfo) -> None:
        if info.playback_subject is None:
            return
        self._playback = Playback(
            self.ctx.publisher,
            self.ctx.metrics,
            self.ws,
            stream_id=info.stream_id,
            subject=info.playback_subject,
            is_streaming=lambda: self.session.state is State.STREAMING,
        )
        await self._playback.start()

    def _finish_observability(self) -> None:
        m = self.ctx.metrics
        session = self.session
        code = self._close_code if self._close_code is not None else (self.ws.close_code or 1006)
        reason = self._close_reason or (session.stop_reason or "closed")
        m.streams_closed.labels(self._route, str(code), reason).inc()
        if session.info is None:
            return
        m.streams_active.labels(self._route).dec()
        for track, stats in session.tracks.items():
            for name, value in (
                ("gap", stats.gaps),
                ("duplicate", stats.duplicates),
                ("reordered", stats.reordered),
            ):
                if value:
                    m.sequence_anomalies.labels(self._route, track, name).inc(value)
        if session.ignored:
            m.messages_ignored.labels("unknown_event").inc(session.ignored)
        if self._span is not None:
            error = reason if session.stop_reason == "error" else None
            self.ctx.tracing.event(self._span, "stop", {"reason": session.stop_reason or reason})
            self.ctx.tracing.end(self._span, reason=session.stop_reason or reason, error=error)
        frames = {t: s.frames for t, s in session.tracks.items() if s.frames}
        self._log.info("stream ended: reason=%s code=%s frames=%s", session.stop_reason, code, frames)


def _websocket_error(exc: BaseException | None) -> RemoteProtocolError:
    """aiohttp's reader rejected a frame and has already closed the socket with ``exc.code``."""
    code = getattr(exc, "code", None)
    if code == CloseCode.MESSAGE_TOO_BIG:
        return RemoteProtocolError("message too big", reason="too_big", close_code=CloseCode.MESSAGE_TOO_BIG)
    if code == CloseCode.INVALID_PAYLOAD:  # a text frame that is not UTF-8
        return RemoteProtocolError("text frame is not UTF-8", reason="malformed", close_code=CloseCode.INVALID_PAYLOAD)
    try:
        close_code = CloseCode(code) if code is not None else CloseCode.POLICY_VIOLATION
    except ValueError:
        close_code = CloseCode.POLICY_VIOLATION
    return RemoteProtocolError(f"websocket error: {type(exc).__name__}", reason="ws_error", close_code=close_code)


def bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``; None if absent or another scheme."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()

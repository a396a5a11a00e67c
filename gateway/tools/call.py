"""One simulated call on its socket: connect as the provider, stream, answer the back-channel, end.

:func:`run_call` builds the call's writer (:mod:`gateway.tools.providers`) and frame plan
(:mod:`gateway.tools.wire`), connects with the provider's credential and subprotocol, and runs two
tasks on the socket: the sender (opening frames, one tick of media per frame duration against
absolute deadlines, DTMF, the end) and the reader (every server frame is kept; in bidirectional
mode it is also acted on as the provider would: audio queued on the :class:`Playback`, marks
echoed when reached, clears answered). Echoes and media share a lock, so the provider's message
counter never goes backwards on the wire. Status callbacks go out at the start and after the end.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

import aiohttp
from yarl import URL

from gateway.protocol.signatures import twilio_signature
from gateway.tools.callbacks import CallbackAuth, post, signed_request
from gateway.tools.providers import (
    BackAction,
    BadBackMessage,
    ClearQueue,
    HangUp,
    Phase,
    ProviderWire,
    QueueAudio,
    QueueMark,
    SendDigits,
    StreamSpec,
    provider,
)
from gateway.tools.providers.playback import Playback
from gateway.tools.wire import Faults, FramePlan, MediaFrame, Track, frame_count, make_signal, track_seed, tracks_for

if TYPE_CHECKING:
    from gateway.tools.simulate import CallReport, SimulateOptions

_READER_GRACE: Final = 10.0
DTMF_DURATION_MS: Final = 120
TELNYX_TOKEN_HEADER: Final = "X-Telnyx-Streaming-Auth-Token"
"""Where Telnyx sends a stream's ``stream_auth_token`` (verbatim, no scheme)."""


def signed_url(url: str) -> str:
    """The URL a Twilio signature covers: the one connected to, as the ``wss`` URL Twilio dials."""
    parsed = URL(url)
    return str(parsed.with_scheme("wss" if parsed.scheme in ("ws", "wss") else parsed.scheme))


def upgrade_headers(opts: SimulateOptions, url: str) -> dict[str, str]:
    """The provider's credential on the upgrade request."""
    headers: dict[str, str] = {}
    if opts.token and opts.provider == "telnyx":
        headers[TELNYX_TOKEN_HEADER] = opts.token
    elif opts.token:
        headers["Authorization"] = f"Bearer {opts.token}"
    if opts.basic:
        headers["Authorization"] = "Basic " + base64.b64encode(opts.basic.encode()).decode()
    if opts.twilio_auth_token:
        headers["X-Twilio-Signature"] = twilio_signature(opts.twilio_auth_token, opts.signature_url or signed_url(url))
    return headers


def _new_call(opts: SimulateOptions, index: int) -> tuple[CallReport, ProviderWire, FramePlan]:
    from gateway.tools.simulate import CallReport

    wire_class = provider(opts.provider)
    codec = opts.codec_spec
    ids = wire_class.new_ids()
    if opts.call_id is not None:
        ids = dataclasses.replace(ids, call_id=opts.call_id)
    params = dict(opts.params)
    url = opts.url
    control_id = None if opts.control_id is None else opts.control_id.replace("{i}", str(index))
    if control_id is not None:
        if opts.control_id_in_path:
            url = url.rstrip("/") + "/" + quote(control_id, safe="")
        else:
            params["control_id"] = control_id
    tracks: tuple[Track, ...] = ("inbound", "outbound") if opts.mix_type == "stereo" else tracks_for(opts.track)
    stream = StreamSpec(ids, tracks, codec, params, opts.mix_type, epoch_ms=round(time.time() * 1000))
    wire = wire_class(stream)
    plan = FramePlan(
        wire.lane_sources(lambda track: make_signal(opts.signal, codec, track_seed(opts.seed, index, track), track)),
        Faults(opts.drop, opts.duplicate, opts.reorder),
        f"{opts.seed}:{index}",
        sequence=wire.next_sequence,
        frame_ms=wire.frame_ms,
        first_timestamp=wire.first_timestamp,
    )
    report = CallReport(
        index=index,
        provider=opts.provider,
        call_id=ids.call_id,
        stream_id=ids.stream_id,
        account_id=ids.account_id,
        control_id=control_id if control_id is not None else params.get("control_id", ids.stream_id or None),
        url=url,
        codec=codec.label,
        tracks=tracks,
        custom_parameters=params,
        sent={track: [] for track in tracks},
        frames={lane: [] for lane in wire.lanes},
        frames_planned=frame_count(opts.duration, wire.frame_ms),
        frames_dropped=dict.fromkeys(tracks, 0),
        frames_duplicated=dict.fromkeys(tracks, 0),
        frames_reordered=dict.fromkeys(tracks, 0),
        expected_close=None if opts.abrupt_close else 1000,
    )
    return report, wire, plan


async def run_call(session: aiohttp.ClientSession, opts: SimulateOptions, index: int, delay: float) -> CallReport:
    """One call from connect to close (after ``delay`` seconds: the ramp)."""
    if delay > 0:
        await asyncio.sleep(delay)  # the ramp: spreading starts is the point, not a synchronisation
    report, wire, plan = _new_call(opts, index)
    report.started_at = time.time()
    try:
        ws = await session.ws_connect(
            report.url,
            headers=upgrade_headers(opts, report.url),
            protocols=wire.subprotocols,
            timeout=aiohttp.ClientWSTimeout(ws_close=opts.close_timeout),
        )
    except aiohttp.WSServerHandshakeError as exc:
        report.error = f"handshake refused: HTTP {exc.status} {exc.message}"
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        report.error = f"connect failed: {exc!r}"
    else:
        report.subprotocol = ws.protocol
        call = _Call(ws, session, opts, report, wire, plan)
        try:
            await call.run()
        finally:
            await ws.close()
    for lane in wire.lanes:
        report.frames_dropped[lane], report.frames_duplicated[lane], report.frames_reordered[lane] = plan.counts(lane)
    report.ended_at = time.time()
    return report


class _Call:
    """One call's socket plus the state its sender and reader share."""

    def __init__(  # noqa: PLR0917 - one call's parts, built together by run_call
        self,
        ws: aiohttp.ClientWebSocketResponse,
        session: aiohttp.ClientSession,
        opts: SimulateOptions,
        report: CallReport,
        wire: ProviderWire,
        plan: FramePlan,
    ) -> None:
        self.ws = ws
        self.session = session
        self.opts = opts
        self.report = report
        self.wire = wire
        self.plan = plan
        self.lock = asyncio.Lock()
        self.server_gone = asyncio.Event()
        """Set when the server closed or the connection was lost: the sender stops at once."""
        self.hung_up = asyncio.Event()
        """Set when the provider ends the call itself (jambonz ``disconnect``)."""
        self.dropped_by_us = False
        self.playback = Playback(self._echo) if opts.bidirectional else None
        self._status_started: asyncio.Task[None] | None = None

    async def run(self) -> None:
        report, opts = self.report, self.opts
        reader = asyncio.create_task(self._read())
        player = asyncio.create_task(self.playback.run()) if self.playback is not None else None
        try:
            await self._send_all()
        except (ConnectionError, aiohttp.ClientError) as exc:
            if not self.server_gone.is_set():
                report.error = report.error or f"send failed: {exc!r}"
        finally:
            try:
                await asyncio.wait_for(reader, _READER_GRACE)
            except TimeoutError:
                report.error = report.error or "the connection did not finish closing"
            if player is not None:
                player.cancel()
            self._collect_playback()
            if self._status_started is not None:
                await self._status_started
                await self._post_status("stopped")
        if not report.closed_by_server and not opts.abrupt_close and report.close_code is None:
            report.close_code = self.ws.close_code

    # -- sending -------------------------------------------------------------------------------

    async def _send(self, data: str | bytes) -> None:
        if isinstance(data, bytes):
            await self.ws.send_bytes(data)
        else:
            await self.ws.send_str(data)
        self.report.messages_sent += 1

    async def _media(self, frame: MediaFrame) -> None:
        await self._send(self.wire.media(frame))
        report = self.report
        report.frames[frame.track].append(frame)
        for track, audio in frame.tracks():
            report.sent[track].append(audio)

    async def _dtmf(self, digit: str, tick: int) -> None:
        await self._send(self.wire.dtmf(digit, DTMF_DURATION_MS, tick * self.wire.frame_ms))
        self.report.dtmf_sent.append(digit)

    def _lingering(self) -> bool:
        playback, opts = self.playback, self.opts
        if playback is None:
            return False
        return len(self.report.marks_echoed) < opts.await_marks or playback.played_bytes < opts.await_played

    def _unmet(self) -> str:
        opts, played = self.opts, self.playback.played_bytes if self.playback is not None else 0
        return (
            f"after lingering {opts.linger:g}s: {len(self.report.marks_echoed)} of {opts.await_marks} marks "
            f"echoed, {played} of {opts.await_played} bytes played"
        )

    def _stopped(self) -> bool:
        return self.server_gone.is_set() or self.hung_up.is_set()

    async def _send_all(self) -> None:
        opts, wire, report = self.opts, self.wire, self.report
        connected = wire.connected()
        if connected is not None and not opts.no_connected:
            await self._send(connected)
        await self._send(wire.start())
        if opts.status_url is not None:
            self._status_started = asyncio.create_task(self._post_status("started"))
        planned = report.frames_planned
        dtmf_at: dict[int, list[str]] = {}
        for i, digit in enumerate(opts.dtmf):
            dtmf_at.setdefault((i + 1) * planned // (len(opts.dtmf) + 1), []).append(digit)
        loop = asyncio.get_running_loop()
        step = wire.frame_ms / 1000
        realtime, origin, linger_until = opts.realtime, loop.time(), None
        tick = 0
        while True:
            if tick >= planned:
                if not self._lingering():
                    break
                if linger_until is None:
                    linger_until = loop.time() + opts.linger
                    if not realtime:  # while waiting for playback, audio flows at the media clock
                        realtime, origin = True, loop.time() - tick * step
                if loop.time() >= linger_until:
                    report.error = report.error or self._unmet()
                    break
            if realtime:
                # Absolute deadlines (origin + n * frame): a late tick is caught up, never accumulated.
                delay = origin + (tick + 1) * step - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            else:
                await asyncio.sleep(0)  # let the reader and the other calls run between ticks
            if self._stopped():
                break
            async with self.lock:
                for frame in self.plan.tick():
                    await self._media(frame)
                for digit in dtmf_at.pop(tick, ()):
                    await self._dtmf(digit, tick)
            tick += 1
        if self.server_gone.is_set():
            return
        async with self.lock:
            for frame in self.plan.flush():
                await self._media(frame)
            for at, late in sorted(dtmf_at.items()):
                for digit in late:
                    await self._dtmf(digit, at)
        if opts.abrupt_close:
            self._drop()
            return
        stop = None if self.hung_up.is_set() else wire.stop()
        if stop is not None:
            async with self.lock:
                await self._send(stop)
        await self.ws.close(code=aiohttp.WSCloseCode.OK)

    def _drop(self) -> None:
        """Close the TCP connection under the WebSocket: buffered frames flush, no close frame."""
        self.dropped_by_us = True
        # aiohttp has no public way to skip the closing handshake; its response owns the transport.
        connection = self.ws._response.connection
        transport = None if connection is None else connection.transport
        if transport is not None:
            transport.close()

    # -- reading -------------------------------------------------------------------------------

    async def _read(self) -> None:
        report = self.report
        while True:
            msg = await self.ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                report.received.append(msg.data)
                if self.playback is not None:
                    await self._back(msg.data)
                continue
            if msg.type is aiohttp.WSMsgType.CLOSE:
                report.close_code = msg.data
                report.close_reason = msg.extra or None
                report.closed_by_server = True
            elif msg.type is aiohttp.WSMsgType.CLOSING:
                return  # our own close() has taken the socket over and reads the server's echo
            elif not self.dropped_by_us:
                # CLOSED or ERROR with no close frame first: the server (or the network) cut us off.
                report.closed_by_server = True
                report.error = f"connection lost without a close frame ({msg.type.name})"
            self.server_gone.set()
            return

    async def _back(self, data: str | bytes) -> None:
        """One server frame, acted on as the provider would (bidirectional mode)."""
        try:
            actions = self.wire.read_back(data)
        except BadBackMessage as exc:
            self.report.refused.append(str(exc))
            return
        for action in actions:
            await self._act(action)

    async def _act(self, action: BackAction) -> None:
        playback = self.playback
        assert playback is not None
        if isinstance(action, QueueAudio):
            playback.audio(len(action.payload), action.bytes_per_ms)
        elif isinstance(action, QueueMark):
            if playback.mark(action.name):
                await self._echo(action.name)
        elif isinstance(action, ClearQueue):
            pending = playback.clear()
            if self.wire.echoes_marks_on_clear:
                for name in pending:
                    await self._echo(name)
            answer = self.wire.clear_answer()
            if answer is not None:
                await self._send_locked(answer)
        elif isinstance(action, SendDigits):
            self.report.digits_requested.append(action.digits)
        elif isinstance(action, HangUp):
            self._hang_up(action)

    def _hang_up(self, action: HangUp) -> None:
        if action.abrupt:
            # The provider gives up on the socket (Vonage on a frame that is not 20 ms): a failure
            # of the stream, reported as one.
            self.report.error = f"{self.opts.provider} dropped the connection: {action.reason}"
            self.report.refused.append(action.reason)
            self._drop()
            self.server_gone.set()
        else:
            self.hung_up.set()

    async def _send_locked(self, data: str) -> bool:
        if self.ws.closed or self.server_gone.is_set():
            return False
        try:
            async with self.lock:
                await self._send(data)
        except (ConnectionError, aiohttp.ClientError):
            return False
        return True

    async def _echo(self, name: str) -> None:
        if await self._send_locked(self.wire.mark_echo(name)):
            self.report.marks_echoed.append(name)

    def _collect_playback(self) -> None:
        playback = self.playback
        if playback is None:
            return
        report = self.report
        report.received_audio_bytes = playback.received_bytes
        report.played_bytes = playback.played_bytes
        report.cleared_bytes = playback.cleared_bytes
        report.clears = playback.clears

    # -- status callbacks ----------------------------------------------------------------------

    async def _post_status(self, phase: Phase) -> None:
        opts, report = self.opts, self.report
        if opts.status_url is None:
            return
        callback = self.wire.status_callback(
            phase,
            url=signed_url(report.url),
            control_id=report.control_id or report.stream_id,
            at=time.time(),
            variant=opts.status_format,
        )
        if callback is None:
            return
        key = opts.status_signing_key or (opts.twilio_auth_token if opts.provider == "twilio" else None)
        auth = CallbackAuth(token=opts.status_token, basic=opts.status_basic, signing_key=key)
        request = signed_request(opts.provider, opts.status_url, callback, auth, time.time())
        try:
            report.status.append((phase, await post(self.session, request)))
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            report.status.append((phase, f"failed: {exc!r}"))

"""``streamgw simulate``: play SignalWire (or Twilio) against the gateway's stream endpoint.

Opens one WebSocket per simulated call as the provider would (the client side), sends
``connected``, ``start``, paced ``media`` and ``stop`` exactly as the provider's wire format
spells them (built by :mod:`gateway.tools.wire`), and reads whatever the server sends back, so a
server-initiated close stops the call and is recorded. Faults (drops, duplicates, reordering, no
``connected``, an abrupt TCP drop) are injected on request. The library entry point is
:func:`simulate`; :func:`register` adds the CLI sub-command. It shares no code with the gateway's
own parser on purpose: it is an independent peer, not a mirror.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TextIO
from urllib.parse import quote

import aiohttp

from gateway.audio import FRAME_MS, CodecSpec, parse_codec
from gateway.tools.wire import (
    CallIds,
    Dialect,
    Faults,
    FramePlan,
    MediaFrame,
    WireFormat,
    frame_count,
    make_signal,
    track_seed,
    tracks_for,
)

_CLOSE_TIMEOUT = 5.0
_CONNECT_TIMEOUT = 10.0
_READER_GRACE = 10.0


@dataclass(frozen=True)
class SimulateOptions:
    url: str = "ws://127.0.0.1:8080/stream"
    """The stream endpoint; ``/{control_id}`` is appended when ``control_id_in_path``."""
    calls: int = 1
    track: Literal["inbound", "outbound", "both"] = "inbound"
    codec: str = "PCMU"
    """``PCMU``, ``PCMA``, ``L16@16000`` or ``L16@24000`` (``Sgw-Codec`` spellings work too)."""
    duration: float = 1.0
    """Seconds of audio per call (50 frames per second per track)."""
    realtime: bool = True
    """Pace at 20 ms per tick against absolute deadlines; False sends as fast as possible."""
    token: str | None = None
    """Sent as ``Authorization: Bearer <token>`` on the upgrade request."""
    params: Mapping[str, str] = field(default_factory=dict)
    """``start.customParameters``."""
    control_id: str | None = None
    """The route key; ``{i}`` is replaced by the call's index, so N calls can use N routes."""
    control_id_in_path: bool = True
    """Path segment (``/stream/{control_id}``) or ``customParameters["control_id"]``."""
    dialect: Dialect = "signalwire"
    signal: Literal["speech", "tone"] = "speech"
    drop: float = 0.0
    """Probability of skipping a media frame (its counters are used up: a gap)."""
    duplicate: float = 0.0
    """Probability of sending a media frame twice (identical message)."""
    reorder: float = 0.0
    """Probability of swapping a frame with the next frame of the same track."""
    no_connected: bool = False
    abrupt_close: bool = False
    """No ``stop`` and no close frame: the TCP connection is just closed after the last frame."""
    call_id: str | None = None
    """One call id for every stream: several streams of one call (SWML allows that, each with its
    own ``control_id``). Absent: each call gets its own."""
    close_timeout: float = _CLOSE_TIMEOUT
    """How long to wait for the server's echo of our close (a gateway pausing its reads under
    back-pressure reads the ``stop`` and the close late: tests of that wait longer)."""
    seed: int = 0
    ramp: float = 0.0
    """Seconds over which call starts are spread evenly."""

    def __post_init__(self) -> None:
        if self.calls < 1:
            raise ValueError("calls must be at least 1")
        if self.duration < 0 or self.ramp < 0:
            raise ValueError("duration and ramp must not be negative")
        for name in ("drop", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability, got {value}")
        parse_codec(self.codec)


@dataclass
class CallReport:
    """What one simulated call did, and what the server did to it."""

    index: int
    call_id: str
    stream_id: str
    account_id: str
    control_id: str | None
    """The route key the gateway should resolve: path or parameter value, else the stream id."""
    url: str
    codec: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str]
    sent: dict[str, list[bytes]]
    """Per track, the raw payload of every media message sent, in send order (duplicates twice)."""
    frames: dict[str, list[MediaFrame]]
    """The same messages with their counters (``sequenceNumber``, ``chunk``, ``timestamp``)."""
    frames_planned: int
    frames_dropped: dict[str, int]
    frames_duplicated: dict[str, int]
    frames_reordered: dict[str, int]
    expected_close: int | None
    messages_sent: int = 0
    received: list[str | bytes] = field(default_factory=list)
    """Every data frame the server sent (bidirectional media, marks, ...)."""
    close_code: int | None = None
    """The code of the server's close frame (its echo of our 1000, or its own close)."""
    close_reason: str | None = None
    closed_by_server: bool = False
    """True when the server closed (or dropped) the connection before we finished."""
    error: str | None = None
    started_at: float = 0.0
    ended_at: float = 0.0

    @property
    def frames_sent(self) -> int:
        return sum(len(payloads) for payloads in self.sent.values())

    @property
    def ok(self) -> bool:
        """No error, and the close the options asked for (1000, or none for ``abrupt_close``)."""
        return self.error is None and self.close_code in (1000, self.expected_close)


@dataclass
class SimulationReport:
    calls: list[CallReport]
    elapsed: float

    @property
    def frames_sent(self) -> int:
        return sum(call.frames_sent for call in self.calls)

    @property
    def failures(self) -> list[CallReport]:
        return [call for call in self.calls if not call.ok]


async def simulate(opts: SimulateOptions) -> SimulationReport:
    """Run ``opts.calls`` concurrent calls against ``opts.url`` and report on each."""
    codec = parse_codec(opts.codec)
    started = time.monotonic()
    # One connector for every call, without aiohttp's default cap of 100 connections per host.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [
            asyncio.create_task(_run_call(session, opts, index, codec, opts.ramp * index / opts.calls))
            for index in range(opts.calls)
        ]
        reports = list(await asyncio.gather(*tasks))
    return SimulationReport(calls=reports, elapsed=time.monotonic() - started)


def _new_report(opts: SimulateOptions, index: int, codec: CodecSpec) -> tuple[CallReport, WireFormat]:
    ids = CallIds.new(opts.dialect)
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
    tracks = tracks_for(opts.track)
    wire = WireFormat(opts.dialect, ids, tracks, codec, params)
    report = CallReport(
        index=index,
        call_id=ids.call_id,
        stream_id=ids.stream_id,
        account_id=ids.account_id,
        control_id=control_id if control_id is not None else params.get("control_id", ids.stream_id),
        url=url,
        codec=codec.label,
        tracks=tracks,
        custom_parameters=params,
        sent={track: [] for track in tracks},
        frames={track: [] for track in tracks},
        frames_planned=frame_count(opts.duration),
        frames_dropped=dict.fromkeys(tracks, 0),
        frames_duplicated=dict.fromkeys(tracks, 0),
        frames_reordered=dict.fromkeys(tracks, 0),
        expected_close=None if opts.abrupt_close else 1000,
    )
    return report, wire


async def _run_call(
    session: aiohttp.ClientSession,
    opts: SimulateOptions,
    index: int,
    codec: CodecSpec,
    delay: float,
) -> CallReport:
    if delay > 0:
        await asyncio.sleep(delay)  # the ramp: spreading starts is the point, not a synchronisation
    report, wire = _new_report(opts, index, codec)
    signals = {
        track: make_signal(opts.signal, codec, track_seed(opts.seed, index, track), track) for track in wire.tracks
    }
    faults = Faults(opts.drop, opts.duplicate, opts.reorder)
    plan = FramePlan(wire, report.frames_planned, signals, faults, f"{opts.seed}:{index}")
    headers = {"Authorization": f"Bearer {opts.token}"} if opts.token else {}
    report.started_at = time.time()
    try:
        ws = await session.ws_connect(
            report.url, headers=headers, timeout=aiohttp.ClientWSTimeout(ws_close=opts.close_timeout)
        )
    except aiohttp.WSServerHandshakeError as exc:
        report.error = f"handshake refused: HTTP {exc.status} {exc.message}"
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        report.error = f"connect failed: {exc!r}"
    else:
        try:
            await _stream(ws, wire, plan, report, opts)
        finally:
            await ws.close()
    for track in wire.tracks:
        dropped, duplicated, reordered = plan.counts(track)
        report.frames_dropped[track] = dropped
        report.frames_duplicated[track] = duplicated
        report.frames_reordered[track] = reordered
    report.ended_at = time.time()
    return report


class _Connection:
    """One call's socket plus the flags its sender and reader share."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, report: CallReport) -> None:
        self.ws = ws
        self.report = report
        self.server_gone = asyncio.Event()
        """Set when the server closed or the connection was lost: the sender stops at once."""
        self.dropped_by_us = False

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)
        self.report.messages_sent += 1

    def drop(self) -> None:
        """Close the TCP connection under the WebSocket: buffered frames flush, no close frame."""
        self.dropped_by_us = True
        # aiohttp has no public way to skip the closing handshake; its response owns the transport.
        connection = self.ws._response.connection
        transport = None if connection is None else connection.transport
        if transport is not None:
            transport.close()

    async def read(self) -> None:
        report = self.report
        while True:
            msg = await self.ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                report.received.append(msg.data)
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


async def _stream(
    ws: aiohttp.ClientWebSocketResponse,
    wire: WireFormat,
    plan: FramePlan,
    report: CallReport,
    opts: SimulateOptions,
) -> None:
    conn = _Connection(ws, report)
    reader = asyncio.create_task(conn.read())
    try:
        await _send_all(conn, wire, plan, opts)
    except (ConnectionError, aiohttp.ClientError) as exc:
        if not conn.server_gone.is_set():
            report.error = f"send failed: {exc!r}"
    finally:
        try:
            await asyncio.wait_for(reader, _READER_GRACE)
        except TimeoutError:
            report.error = report.error or "the connection did not finish closing"
    if not report.closed_by_server and not opts.abrupt_close:
        report.close_code = ws.close_code


async def _send_all(conn: _Connection, wire: WireFormat, plan: FramePlan, opts: SimulateOptions) -> None:
    report = conn.report
    if not opts.no_connected:
        await conn.send(wire.connected())
    await conn.send(wire.start())
    loop = asyncio.get_running_loop()
    origin = loop.time()
    for tick, batch in enumerate(plan.ticks()):
        if opts.realtime:
            # Absolute deadlines (origin + n * 20 ms): a late tick is caught up, never accumulated.
            delay = origin + (tick + 1) * FRAME_MS / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)  # let the reader and the other calls run between ticks
        if conn.server_gone.is_set():
            return
        for frame in batch:
            await conn.send(wire.media(frame))
            report.sent[frame.track].append(frame.payload)
            report.frames[frame.track].append(frame)
    if conn.server_gone.is_set():
        return
    if opts.abrupt_close:
        conn.drop()
        return
    await conn.send(wire.stop(plan.stop_sequence_number))
    await conn.ws.close(code=aiohttp.WSCloseCode.OK)


# ---------------------------------------------------------------------------------------------
# Command line


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` sub-command."""
    parser = subparsers.add_parser(
        "simulate",
        help="act as SignalWire/Twilio: stream synthetic calls to the gateway",
        description="Open N provider-style media-stream WebSockets against the gateway.",
    )
    parser.add_argument("--url", default="ws://127.0.0.1:8080/stream")
    parser.add_argument("--calls", type=int, default=1, help="concurrent calls")
    parser.add_argument("--track", choices=("inbound", "outbound", "both"), default="inbound")
    parser.add_argument("--codec", default="PCMU", help="PCMU | PCMA | L16@16000 | L16@24000")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds of audio per call")
    parser.add_argument("--max-rate", action="store_true", help="send as fast as possible")
    parser.add_argument("--token", help="bearer token for the upgrade request")
    parser.add_argument("--param", action="append", default=[], metavar="K=V", help="custom parameter (repeatable)")
    parser.add_argument("--control-id", help="route key; {i} becomes the call index")
    parser.add_argument(
        "--control-id-in-params",
        action="store_true",
        help="send the control id as customParameters.control_id instead of in the path",
    )
    parser.add_argument("--dialect", choices=("signalwire", "twilio"), default="signalwire")
    parser.add_argument("--signal", choices=("speech", "tone"), default="speech")
    parser.add_argument("--drop", type=float, default=0.0, metavar="P")
    parser.add_argument("--duplicate", type=float, default=0.0, metavar="P")
    parser.add_argument("--reorder", type=float, default=0.0, metavar="P")
    parser.add_argument("--no-connected", action="store_true", help="omit the connected message")
    parser.add_argument("--abrupt-close", action="store_true", help="drop TCP instead of stop+close")
    parser.add_argument("--call-id", help="one call id for every stream (several streams of one call)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds to spread call starts over")
    parser.set_defaults(func=run_cli)


def options_from_args(args: argparse.Namespace) -> SimulateOptions:
    params: dict[str, str] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--param expects K=V, got {item!r}")
        params[key] = value
    return SimulateOptions(
        url=args.url,
        calls=args.calls,
        track=args.track,
        codec=args.codec,
        duration=args.duration,
        realtime=not args.max_rate,
        token=args.token,
        params=params,
        control_id=args.control_id,
        control_id_in_path=not args.control_id_in_params,
        dialect=args.dialect,
        signal=args.signal,
        drop=args.drop,
        duplicate=args.duplicate,
        reorder=args.reorder,
        no_connected=args.no_connected,
        abrupt_close=args.abrupt_close,
        call_id=args.call_id,
        seed=args.seed,
        ramp=args.ramp,
    )


def run_cli(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Run the sub-command: 0 when every call ended as asked, 1 otherwise, 2 for bad options."""
    try:
        opts = options_from_args(args)
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    report = asyncio.run(simulate(opts))
    out.write(format_report(report))
    return 0 if not report.failures else 1


def format_report(report: SimulationReport) -> str:
    """Per-call lines and a total, plain text."""
    lines = [
        f"{'#':>3}  {'call_id':<36}  {'control_id':<20}  {'codec':<10}  {'sent':>6}  "
        f"{'drop':>4}  {'dup':>4}  {'reord':>5}  {'close':>5}  error"
    ]
    for call in report.calls:
        lines.append(
            f"{call.index:>3}  {call.call_id:<36}  {(call.control_id or '-')[:20]:<20}  "
            f"{call.codec:<10}  {call.frames_sent:>6}  {sum(call.frames_dropped.values()):>4}  "
            f"{sum(call.frames_duplicated.values()):>4}  {sum(call.frames_reordered.values()):>5}  "
            f"{call.close_code if call.close_code is not None else '-':>5}  "
            f"{call.error or (call.close_reason or '')}"
        )
    closes = Counter("none" if call.close_code is None else str(call.close_code) for call in report.calls)
    errors = sum(1 for call in report.calls if call.error)
    lines.append(
        f"total: {len(report.calls)} calls, {report.frames_sent} frames sent, "
        f"close codes {dict(sorted(closes.items()))}, {errors} errors, "
        f"{len(report.failures)} unexpected, {report.elapsed:.2f} s"
    )
    return "\n".join(lines) + "\n"

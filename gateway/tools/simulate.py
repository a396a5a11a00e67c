"""``streamgw simulate``: play a telephony provider against the gateway's stream endpoint.

Opens one WebSocket per simulated call as the provider would (the client side, with the
provider's credential: a bearer token, HTTP Basic, or Twilio's URL signature; jambonz offers its
subprotocol), and speaks the provider's own wire format (:mod:`gateway.tools.providers`): its
opening frames, paced media (JSON text frames or binary L16), DTMF, and its end (``stop`` and a
close, or just the close). Faults (drops, duplicates, Telnyx-style reordering, no ``connected``,
an abrupt TCP drop) are injected on request. With ``bidirectional`` it also behaves like the
provider's player: audio the server sends back is played at real-time speed and marks are echoed
as the provider echoes them once the audio before them has played (:mod:`gateway.tools.call`).
With ``status_url`` it posts the provider's status callbacks at the stream's start and end,
signed as the provider signs them (:mod:`gateway.tools.callbacks`). The library entry point is
:func:`simulate`; :func:`register` adds the CLI sub-command.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, TextIO, get_args

import aiohttp

from gateway.audio import CodecSpec, parse_codec
from gateway.tools.providers import PROVIDERS, MixType, ProviderName, provider
from gateway.tools.wire import MediaFrame, Track, TrackChoice

_CLOSE_TIMEOUT: Final = 5.0
_CONNECT_TIMEOUT: Final = 10.0
_DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")
STATUS_FORMATS: Final[dict[str, tuple[str, ...]]] = {
    "signalwire": ("swml", "cxml"),
    "twilio": ("cxml",),
    "telnyx": ("json", "texml"),
    "plivo": ("form",),
    "bandwidth": ("json",),
}
"""The status callback formats each provider posts; the first is its default."""


@dataclass(frozen=True)
class SimulateOptions:
    url: str = "ws://127.0.0.1:8080/stream"
    """The stream endpoint; ``/{control_id}`` is appended when ``control_id_in_path``."""
    calls: int = 1
    provider: ProviderName = "signalwire"
    track: TrackChoice = "inbound"
    codec: str | None = None
    """``PCMU``, ``PCMA``, ``L16@16000``... (``Sgw-Codec`` spellings work too); None: the
    provider's default (PCMU for SignalWire, Twilio, Telnyx, Bandwidth; L16 otherwise)."""
    mix_type: MixType = "mono"
    """jambonz: ``mono``, ``mixed`` (both legs summed) or ``stereo`` (both legs interleaved)."""
    duration: float = 1.0
    """Seconds of audio per call (one frame per track every 20 ms; Exotel every 100 ms)."""
    realtime: bool = True
    """Pace at the frame duration against absolute deadlines; False sends as fast as possible."""
    token: str | None = None
    """A bearer token on the upgrade (``Authorization: Bearer``; Telnyx's own header for Telnyx)."""
    basic: str | None = None
    """``user:password`` sent as HTTP Basic on the upgrade (Exotel, jambonz, Bandwidth)."""
    twilio_auth_token: str | None = None
    """Sign the upgrade like Twilio: ``X-Twilio-Signature`` over the ``wss://`` URL."""
    signature_url: str | None = None
    """The URL the Twilio signature covers, when it is not the one connected to with ``wss``
    (a proxy in front of the gateway)."""
    params: Mapping[str, str] = field(default_factory=dict)
    """The custom parameters, wherever the provider carries them."""
    control_id: str | None = None
    """The route key; ``{i}`` is replaced by the call's index, so N calls can use N routes."""
    control_id_in_path: bool = True
    """Path segment (``/stream/{control_id}``) or the ``control_id`` custom parameter."""
    signal: Literal["speech", "tone"] = "speech"
    dtmf: str = ""
    """Digits pressed during the call, spread evenly over ``duration``."""
    drop: float = 0.0
    """Probability of skipping a media frame (its counters are used up: a gap)."""
    duplicate: float = 0.0
    """Probability of sending a media frame twice (identical message)."""
    reorder: float = 0.0
    """Probability of swapping a frame with the next frame of the same track (as Telnyx may)."""
    no_connected: bool = False
    abrupt_close: bool = False
    """No ``stop`` and no close frame: the TCP connection is just closed after the last frame."""
    call_id: str | None = None
    """One call id for every stream: several streams of one call (SWML allows that, each with its
    own ``control_id``). Absent: each call gets its own."""
    bidirectional: bool = False
    """Play back what the server sends in real time and echo marks as the provider does."""
    await_marks: int = 0
    """Bidirectional: after ``duration``, keep streaming until this many marks have been echoed..."""
    await_played: int = 0
    """...and this many bytes of received audio have played..."""
    linger: float = 30.0
    """...for at most this many seconds."""
    status_url: str | None = None
    """Post the provider's status callbacks here at the stream's start and end."""
    status_format: str | None = None
    """Where a provider has several: SignalWire ``swml``/``cxml``, Telnyx ``json``/``texml``."""
    status_token: str | None = None
    status_basic: str | None = None
    status_signing_key: str | None = None
    """What the provider signs its callbacks with (Twilio Auth Token, SignalWire Signing Key, Plivo
    Auth Token, Telnyx Ed25519 private key); Twilio falls back on ``twilio_auth_token``."""
    close_timeout: float = _CLOSE_TIMEOUT
    """How long to wait for the server's echo of our close (a gateway pausing its reads under
    back-pressure reads the ``stop`` and the close late: tests of that wait longer)."""
    seed: int = 0
    ramp: float = 0.0
    """Seconds over which call starts are spread evenly."""

    def __post_init__(self) -> None:
        if self.calls < 1:
            raise ValueError("calls must be at least 1")
        if self.duration < 0 or self.ramp < 0 or self.linger < 0:
            raise ValueError("duration, ramp and linger must not be negative")
        for name in ("drop", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability, got {value}")
        wire = provider(self.provider)
        wire.check(self.codec_spec, self.track, self.mix_type)
        if self.dtmf and not wire.dtmf_supported:
            raise ValueError(f"{self.provider} delivers no DTMF on the socket")
        if not set(self.dtmf) <= _DTMF_DIGITS:
            raise ValueError(f"dtmf digits are 0-9 * # A-D, got {self.dtmf!r}")
        if self.token and self.basic and self.provider != "telnyx":
            raise ValueError("token and basic both go in the Authorization header: give one")
        for name in ("basic", "status_basic"):
            value = getattr(self, name)
            if value is not None and ":" not in value:
                raise ValueError(f"{name} is user:password")
        formats = STATUS_FORMATS.get(self.provider, ())
        if self.status_url is not None and not formats:
            raise ValueError(f"{self.provider} posts no stream status callbacks")
        if self.status_format is not None and self.status_format not in formats:
            raise ValueError(f"{self.provider} status callbacks are {' or '.join(formats) or 'none'}")

    @property
    def codec_spec(self) -> CodecSpec:
        return parse_codec(self.codec or provider(self.provider).default_codec)


@dataclass
class CallReport:
    """What one simulated call did, and what the server did to it."""

    index: int
    provider: str
    call_id: str
    stream_id: str
    """Empty for providers whose wire carries none (Vonage, jambonz): the gateway makes one up."""
    account_id: str
    control_id: str | None
    """The route key the gateway should resolve: path or parameter value, else the stream id
    (None when that is the stream id the gateway makes up)."""
    url: str
    codec: str
    tracks: tuple[Track, ...]
    custom_parameters: dict[str, str]
    sent: dict[str, list[bytes]]
    """Per track, the raw audio of every media frame sent, in send order (duplicates twice; a
    jambonz stereo frame counts once in each track, de-interleaved)."""
    frames: dict[str, list[MediaFrame]]
    """Per lane (the track; ``inbound`` for jambonz's one binary stream), the frames with their
    counters (``sequenceNumber``, ``chunk``, ``timestamp``)."""
    frames_planned: int
    frames_dropped: dict[str, int]
    frames_duplicated: dict[str, int]
    frames_reordered: dict[str, int]
    expected_close: int | None
    messages_sent: int = 0
    subprotocol: str | None = None
    """The subprotocol the server accepted (jambonz)."""
    dtmf_sent: list[str] = field(default_factory=list)
    received: list[str | bytes] = field(default_factory=list)
    """Every data frame the server sent (bidirectional media, marks, ...)."""
    received_audio_bytes: int = 0
    """Bidirectional: bytes of audio the server sent back (accepted by the provider's rules)."""
    played_bytes: int = 0
    """Bidirectional: of those, bytes that finished playing before the call ended."""
    cleared_bytes: int = 0
    clears: int = 0
    marks_echoed: list[str] = field(default_factory=list)
    """Bidirectional: the marks echoed, in order (Vonage: the notify payload as JSON; jambonz:
    ``playAudio#N`` for the ``playDone`` of the N-th ``playAudio``)."""
    digits_requested: list[str] = field(default_factory=list)
    """Bidirectional: DTMF the server asked the provider to play into the call."""
    refused: list[str] = field(default_factory=list)
    """Server messages the provider would not have accepted, and why."""
    status: list[tuple[str, int | str]] = field(default_factory=list)
    """Status callbacks posted: (phase, HTTP status or the error)."""
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
        """Media messages sent (a jambonz stereo frame is one message)."""
        return sum(len(frames) for frames in self.frames.values())

    @property
    def ok(self) -> bool:
        """No error, the close the options asked for (1000, or none for ``abrupt_close``), and every
        status callback answered 2xx."""
        statuses_ok = all(isinstance(code, int) and 200 <= code < 300 for _, code in self.status)
        return self.error is None and self.close_code in (1000, self.expected_close) and statuses_ok


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
    from gateway.tools.call import run_call

    started = time.monotonic()
    # One connector for every call, without aiohttp's default cap of 100 connections per host.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=_CONNECT_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [
            asyncio.create_task(run_call(session, opts, index, opts.ramp * index / opts.calls))
            for index in range(opts.calls)
        ]
        reports = list(await asyncio.gather(*tasks))
    return SimulationReport(calls=reports, elapsed=time.monotonic() - started)


# ---------------------------------------------------------------------------------------------
# Command line


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` sub-command."""
    parser = subparsers.add_parser(
        "simulate",
        help="act as a telephony provider: stream synthetic calls to the gateway",
        description="Open N provider-style media-stream WebSockets against the gateway, in the provider's "
        f"own wire format ({', '.join(PROVIDERS)}).",
    )
    parser.add_argument("--url", default="ws://127.0.0.1:8080/stream")
    parser.add_argument("--calls", type=int, default=1, help="concurrent calls")
    parser.add_argument(
        "--provider",
        "--dialect",
        dest="provider",
        choices=get_args(ProviderName),
        default="signalwire",
        help="whose wire format to speak (--dialect is the older spelling)",
    )
    parser.add_argument("--track", choices=get_args(TrackChoice), default="inbound")
    parser.add_argument(
        "--codec", help="PCMU | PCMA | L16@8000 | L16@16000 | L16@24000 | L16@48000 (default: the provider's)"
    )
    parser.add_argument("--mix-type", choices=get_args(MixType), default="mono", help="jambonz: the legs it carries")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds of audio per call")
    parser.add_argument("--max-rate", action="store_true", help="send as fast as possible")
    parser.add_argument("--token", help="bearer token for the upgrade request")
    parser.add_argument("--basic", metavar="USER:PASS", help="HTTP Basic credentials for the upgrade request")
    parser.add_argument("--twilio-auth-token", metavar="TOKEN", help="sign the upgrade (X-Twilio-Signature)")
    parser.add_argument("--signature-url", metavar="URL", help="the wss URL to sign (default: --url as wss)")
    parser.add_argument("--param", action="append", default=[], metavar="K=V", help="custom parameter (repeatable)")
    parser.add_argument("--control-id", help="route key; {i} becomes the call index")
    parser.add_argument(
        "--control-id-in-params",
        action="store_true",
        help="send the control id as the control_id custom parameter instead of in the path",
    )
    parser.add_argument("--signal", choices=("speech", "tone"), default="speech")
    parser.add_argument("--dtmf", default="", metavar="DIGITS", help="keys pressed during the call")
    parser.add_argument("--drop", type=float, default=0.0, metavar="P")
    parser.add_argument("--duplicate", type=float, default=0.0, metavar="P")
    parser.add_argument("--reorder", type=float, default=0.0, metavar="P")
    parser.add_argument("--no-connected", action="store_true", help="omit the connected message")
    parser.add_argument("--abrupt-close", action="store_true", help="drop TCP instead of stop+close")
    parser.add_argument("--call-id", help="one call id for every stream (several streams of one call)")
    parser.add_argument("--bidirectional", action="store_true", help="play back what the gateway sends and echo marks")
    parser.add_argument("--await-marks", type=int, default=0, metavar="N", help="keep streaming until N marks echoed")
    parser.add_argument(
        "--await-played", type=int, default=0, metavar="BYTES", help="keep streaming until BYTES were played"
    )
    parser.add_argument("--linger", type=float, default=30.0, help="at most this many seconds for --await-*")
    parser.add_argument("--status-url", metavar="URL", help="post the provider's status callbacks here")
    parser.add_argument("--status-format", help="swml|cxml (SignalWire), json|texml (Telnyx)")
    parser.add_argument("--status-token", help="bearer token for the status callbacks")
    parser.add_argument("--status-basic", metavar="USER:PASS", help="HTTP Basic for the status callbacks")
    parser.add_argument(
        "--status-signing-key",
        metavar="KEY",
        help="sign callbacks: Twilio/Plivo auth token, SignalWire signing key, Telnyx Ed25519 private key (base64)",
    )
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
        provider=args.provider,
        track=args.track,
        codec=args.codec,
        mix_type=args.mix_type,
        duration=args.duration,
        realtime=not args.max_rate,
        token=args.token,
        basic=args.basic,
        twilio_auth_token=args.twilio_auth_token,
        signature_url=args.signature_url,
        params=params,
        control_id=args.control_id,
        control_id_in_path=not args.control_id_in_params,
        signal=args.signal,
        dtmf=args.dtmf,
        drop=args.drop,
        duplicate=args.duplicate,
        reorder=args.reorder,
        no_connected=args.no_connected,
        abrupt_close=args.abrupt_close,
        call_id=args.call_id,
        bidirectional=args.bidirectional,
        await_marks=args.await_marks,
        await_played=args.await_played,
        linger=args.linger,
        status_url=args.status_url,
        status_format=args.status_format,
        status_token=args.status_token,
        status_basic=args.status_basic,
        status_signing_key=args.status_signing_key,
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
        f"{'#':>3}  {'provider':<10}  {'call_id':<36}  {'control_id':<20}  {'codec':<10}  {'sent':>6}  "
        f"{'drop':>4}  {'dup':>4}  {'reord':>5}  {'played':>8}  {'marks':>5}  {'close':>5}  error"
    ]
    for call in report.calls:
        lines.append(
            f"{call.index:>3}  {call.provider:<10}  {call.call_id[:36]:<36}  {(call.control_id or '-')[:20]:<20}  "
            f"{call.codec:<10}  {call.frames_sent:>6}  {sum(call.frames_dropped.values()):>4}  "
            f"{sum(call.frames_duplicated.values()):>4}  {sum(call.frames_reordered.values()):>5}  "
            f"{call.played_bytes:>8}  {len(call.marks_echoed):>5}  "
            f"{call.close_code if call.close_code is not None else '-':>5}  "
            f"{call.error or (call.close_reason or '')}"
        )
        for phase, result in call.status:
            lines.append(f"     status {phase}: {result}")
        for problem in call.refused[:5]:
            lines.append(f"     refused: {problem}")
    closes = Counter("none" if call.close_code is None else str(call.close_code) for call in report.calls)
    errors = sum(1 for call in report.calls if call.error)
    lines.append(
        f"total: {len(report.calls)} calls, {report.frames_sent} frames sent, "
        f"close codes {dict(sorted(closes.items()))}, {errors} errors, "
        f"{len(report.failures)} unexpected, {report.elapsed:.2f} s"
    )
    return "\n".join(lines) + "\n"

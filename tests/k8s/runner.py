"""Run the emulator on 127.0.0.1 (an OS-picked port) in its own thread and event loop.

Tests call kubectl and helm synchronously (`subprocess.run`), often from async tests; if the
emulator shared the test's loop, such a call would block the very server it talks to. The
thread owns a fresh loop, an aiohttp low-level server and the emulator; `stop()` ends open
watches first so aiohttp's graceful shutdown does not wait on them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import aiohttp.web

from tests.k8s.emulator import RealisticKubernetesEmulator

logger = logging.getLogger(__name__)
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 30.0


class EmulatorThread:
    """A context manager: `with EmulatorThread() as server: server.url, server.emulator`."""

    def __init__(self, factory: Callable[[], RealisticKubernetesEmulator] = RealisticKubernetesEmulator) -> None:
        self._factory = factory
        self._thread = threading.Thread(target=self._run, name="k8s-emulator", daemon=True)
        self._started: concurrent.futures.Future[tuple[RealisticKubernetesEmulator, int]] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._emulator: RealisticKubernetesEmulator | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def emulator(self) -> RealisticKubernetesEmulator:
        if self._emulator is None:
            raise RuntimeError("the emulator thread is not running")
        return self._emulator

    def start(self) -> None:
        self._thread.start()
        self._emulator, self.port = self._started.result(timeout=_START_TIMEOUT)

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=_STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError("the emulator thread did not stop")

    def __enter__(self) -> EmulatorThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:
            # Re-raising here would only print an unhandled-thread warning: hand it to start().
            if not self._started.done():
                self._started.set_exception(exc)
            else:
                logger.exception("The emulator thread crashed")
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        emulator = self._factory()
        async with emulator:
            server = aiohttp.web.Server(emulator, access_log=None)
            runner = aiohttp.web.ServerRunner(server, handle_signals=False, shutdown_timeout=5.0)
            await runner.setup()
            try:
                site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
                await site.start()
                port = _bound_port(runner)
                self._started.set_result((emulator, port))
                await self._stop.wait()
                emulator.stop_watches()
            finally:
                await runner.cleanup()


def _bound_port(runner: aiohttp.web.BaseRunner) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple):
            port: Any = address[1]
            return int(port)
    raise RuntimeError("the emulator's site has no TCP address")

"""``streamgw serve`` as a real child process, configured only through ``SGW_*`` variables.

Ports are 0 (the kernel picks them); the banner the command prints names the real ones, so no
port is ever guessed. Output is read continuously (a full pipe would block the gateway) and kept
for assertions. Every process is killed at teardown if it is still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).parents[2]
SERVE: tuple[str, ...] = (sys.executable, "-m", "gateway", "serve")
_WS = re.compile(r"WebSocket\s*:\s*(wss?://\S+/stream)")
_INTERNAL = re.compile(r"internal\s*:\s*(http://\S+?)/metrics")


def serve_env(nats_url: str, **settings: str) -> dict[str, str]:
    """The environment of a test gateway: loopback, kernel-chosen ports, the given NATS."""
    env = {
        "SGW_SERVER__HOST": "127.0.0.1",
        "SGW_SERVER__INTERNAL_HOST": "127.0.0.1",
        "SGW_SERVER__PORT": "0",
        "SGW_SERVER__INTERNAL_PORT": "0",
        "SGW_NATS__URL": nats_url,
        "SGW_ROUTING__SOURCE": "static",
    }
    env.update({f"SGW_{k.upper()}": v for k, v in settings.items()})
    return env


@dataclass
class GatewayProcess:
    proc: asyncio.subprocess.Process
    ws_url: str
    internal_url: str
    output: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(cls, env: dict[str, str], *, argv: Sequence[str] = SERVE, timeout: float = 30.0) -> GatewayProcess:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("SGW_")}
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**clean, **env},
            cwd=REPO,
        )
        output: list[str] = []
        try:
            ws_url, internal_url = await asyncio.wait_for(_read_banner(proc, output), timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        gp = cls(proc, ws_url, internal_url, output)
        gp._reader = asyncio.create_task(gp._drain_output())
        return gp

    async def _drain_output(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.output.append(line.decode(errors="replace"))

    def send_signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return code

    async def kill(self) -> None:
        """Teardown: SIGKILL if still running, then reap."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    def text(self) -> str:
        return "".join(self.output)

    # -- /proc figures (Linux) -------------------------------------------------------------------

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc status")

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def thread_count(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))


async def _read_banner(proc: asyncio.subprocess.Process, output: list[str]) -> tuple[str, str]:
    assert proc.stdout is not None
    ws_url = internal_url = None
    while ws_url is None or internal_url is None:
        raw = await proc.stdout.readline()
        if not raw:
            raise AssertionError("streamgw serve exited before it was up:\n" + "".join(output))
        line = raw.decode(errors="replace")
        output.append(line)
        if m := _WS.search(line):
            ws_url = m.group(1)
        if m := _INTERNAL.search(line):
            internal_url = m.group(1)
    return ws_url, internal_url


async def stop_process(gp: GatewayProcess) -> None:
    with contextlib.suppress(ProcessLookupError):
        gp.send_signal(signal.SIGTERM)
    try:
        await gp.wait(30)
    finally:
        await gp.kill()

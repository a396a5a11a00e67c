"""A bounded soak: calls starting and stopping at a steady rate through a real ``streamgw serve``.

Asserts zero loss (every frame of every call arrives, in order, ``stopped`` last), RSS growth under
5 % after warm-up, and no growth in asyncio tasks or file descriptors. Resources are compared at
two quiet points (no call open, every buffer empty): after the warm-up and after the soak, both
having just carried the same load, so what is left over is what leaked. RSS is read by the
gateway process itself right after a full garbage collection (``probe_serve`` says why).

Length: ``SGW_SOAK_SECONDS`` (default 150) seconds of load in all, of which 40 % (20-60 s) warm-up.
By hand, for 30 minutes (the test's timeout follows the length)::

    SGW_SOAK_SECONDS=1800 .venv/bin/pytest tests/soak -s

``SGW_SOAK_LANES`` (default 8) sets the concurrent calls; each lasts ``SGW_SOAK_CALL_SECONDS``
(default 4), both tracks, so the default rate is 2 calls/s and 800 frames/s. The variables are read
by the test only; the gateway child gets a clean ``SGW_*`` environment.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.embedded_nats import EmbeddedNats
from gateway.tools.simulate import CallReport
from tests.reliability.conftest import ProcessFactory, RecorderFactory
from tests.reliability.harness import CallLanes, Recorder, call_done, eventually, eventually_async, verify_call
from tests.reliability.process import GatewayProcess, serve_env

SOAK_SECONDS = float(os.environ.get("SGW_SOAK_SECONDS", "150"))
LANES = int(os.environ.get("SGW_SOAK_LANES", "8"))
CALL_SECONDS = float(os.environ.get("SGW_SOAK_CALL_SECONDS", "4"))
# Measured: the heap settles into its working set within about a minute of this load.
WARMUP_SECONDS = min(60.0, max(20.0, SOAK_SECONDS * 0.4))
MAX_RSS_GROWTH = 0.05


@dataclass
class Checkpoint:
    rss_kib: int
    """After a full garbage collection (see ``probe_serve``)."""
    rss_kib_before_gc: int
    collected: int
    fds: int
    threads: int
    tasks: int
    by_coroutine: dict[str, int]


async def gateway_metrics(gp: GatewayProcess) -> dict[str, float]:
    async with aiohttp.ClientSession() as http, http.get(gp.internal_url + "/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


async def quiet_checkpoint(gp: GatewayProcess, probe: Path) -> Checkpoint:
    """Wait until nothing is open or buffered in the gateway, then read its resources."""

    async def quiet() -> bool:
        m = await gateway_metrics(gp)
        return m.get("sgw_ws_connections_active", 1) == 0 and m.get("sgw_buffer_frames", 1) == 0

    await eventually_async(quiet, 30, "gateway quiet")
    _clear(probe)
    gp.send_signal(signal.SIGUSR1)
    await eventually(lambda: _read_probe(probe) is not None, 10, "task probe written")
    tasks = _read_probe(probe)
    assert tasks is not None
    return Checkpoint(
        rss_kib=tasks["rss_kib"],
        rss_kib_before_gc=tasks["rss_kib_before_gc"],
        collected=tasks["collected"],
        fds=gp.fd_count(),
        threads=gp.thread_count(),
        tasks=tasks["tasks"],
        by_coroutine=tasks["by_coroutine"],
    )


def _clear(probe: Path) -> None:
    probe.unlink(missing_ok=True)


def _read_probe(probe: Path) -> dict[str, Any] | None:
    """The probe file once it is complete (the handler may still be writing it)."""
    try:
        return dict(json.loads(probe.read_text()))
    except (OSError, ValueError):
        return None


class Verifier:
    """Checks each call once its frames are in, then forgets them (the soak must not hoard audio)."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.queue: asyncio.Queue[CallReport] = asyncio.Queue()
        self.calls = 0
        self.frames = 0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            call = await self.queue.get()
            await eventually(functools.partial(call_done, self.rec, call), 15, f"call {call.call_id} delivered")
            self.frames += verify_call(self.rec, call)
            self.calls += 1
            self.rec.forget(call.call_id)
            self.queue.task_done()

    async def finish(self) -> None:
        await asyncio.wait_for(self.queue.join(), 60)
        self.task.cancel()


async def load_phase(gp: GatewayProcess, verifier: Verifier, seconds: float, rss: list[int]) -> None:
    lanes = CallLanes(gp.ws_url, lanes=LANES, duration=CALL_SECONDS, keep=False)
    lanes.on_report = verifier.queue.put_nowait
    lanes.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if verifier.task.done():
            verifier.task.result()  # a failed verification ends the soak at once
        rss.append(gp.rss_kib())
        await asyncio.sleep(1.0)  # the sampling period of the RSS curve, not a synchronisation
    await lanes.stop()


@pytest.mark.slow
@pytest.mark.timeout(SOAK_SECONDS + 240)
async def test_soak_zero_loss_and_flat_resources(
    nats_server: EmbeddedNats, process_factory: ProcessFactory, recorder_factory: RecorderFactory, tmp_path: Path
) -> None:
    probe = tmp_path / "tasks.json"
    gp = await process_factory(
        serve_env(nats_server.url, OBSERVABILITY__LOG_LEVEL="WARNING"),
        argv=(sys.executable, "-m", "tests.soak.probe_serve", str(probe), "serve"),
    )
    rec = await recorder_factory(nats_server.url)
    verifier = Verifier(rec)
    start_rss = gp.rss_kib()

    warm_rss: list[int] = []
    await load_phase(gp, verifier, WARMUP_SECONDS, warm_rss)
    before = await quiet_checkpoint(gp, probe)
    soak_rss: list[int] = []
    t0 = time.monotonic()
    await load_phase(gp, verifier, SOAK_SECONDS - WARMUP_SECONDS, soak_rss)
    elapsed = time.monotonic() - t0
    after = await quiet_checkpoint(gp, probe)
    await verifier.finish()

    growth = (after.rss_kib - before.rss_kib) / before.rss_kib
    figures = (
        f"soak: {WARMUP_SECONDS:.0f}s warm-up + {elapsed:.0f}s, {LANES} concurrent calls of {CALL_SECONDS:g}s "
        f"(both tracks): {verifier.calls} calls, {verifier.frames} frames, zero loss; "
        f"RSS (after a full gc) start {start_rss} KiB, after warm-up {before.rss_kib} KiB, end {after.rss_kib} KiB "
        f"({growth * 100:+.2f}%); before that gc {before.rss_kib_before_gc} -> {after.rss_kib_before_gc} KiB, "
        f"{before.collected} / {after.collected} cyclic objects collected; under load min/max "
        f"{min(soak_rss)}/{max(soak_rss)} KiB, curve {soak_rss[:: max(1, len(soak_rss) // 10)]} KiB; "
        f"tasks {before.tasks} -> {after.tasks}; fds {before.fds} -> {after.fds}; "
        f"threads {before.threads} -> {after.threads}"
    )
    print(figures)
    assert growth < MAX_RSS_GROWTH, figures
    assert after.tasks <= before.tasks, f"{figures}\n{before.by_coroutine}\n{after.by_coroutine}"
    assert after.fds <= before.fds, figures
    assert verifier.calls >= LANES * (SOAK_SECONDS / CALL_SECONDS) * 0.7, figures
    assert "Traceback" not in gp.text() and " ERROR " not in gp.text(), gp.text()[-3000:]

"""One measurement each: idle RSS, real-time calls, maximum rate, against one running target.

A phase starts a load generator (pinned with the verifier and nats-server), waits until every
stream is open and the target has gone quiet, samples the target, lets the load run, has the
verifier account for every frame, samples again and stops the load generator. It returns plain
figures (a dict that goes into the JSON as is), interference included: what else ran on the
target's CPU, what the load side used on its CPU, and time stolen by the hypervisor.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.control import BenchError, Controlled
from bench.procs import Child, Processes
from bench.procstat import Sample, Usage, cpu_seconds, rss_bytes, usage
from bench.targets import Running, start_gateway
from bench.wire import TRACKS

_MIN_CPU_S = 0.05
"""CPU time is counted in 10 ms ticks: below five of them a rate is not worth printing."""
_SETTLE_WINDOW = 0.1
_SETTLE_MAX_CPU = 0.02
"""The target counts as quiet once it used under 2 % of a core over a 100 ms window."""


@dataclass
class Bench:
    """What every phase needs: the process group, the verifier, the CPUs for the load side."""

    procs: Processes
    verifier: Controlled
    helpers: dict[str, int]
    """Long-lived load-side processes (nats-server, verifier) by name: their CPU is reported."""
    load_cpus: str
    target_core: int
    load_core: int
    start_timeout: float
    phase_timeout: float
    quiet: float
    batch_ticks: int
    sndbuf: int
    _tags: itertools.count[int]

    def run_tag(self) -> int:
        return next(self._tags)


async def settle(pid: int, limit: float = 5.0) -> float:
    """Wait (at most ``limit`` s) until the target is idle, so a window starts with its backlog
    done; returns the seconds waited. Sampling, not synchronisation: the target has no event."""
    loop = asyncio.get_running_loop()
    begun = loop.time()
    while loop.time() - begun < limit:
        c0 = cpu_seconds(pid)
        await asyncio.sleep(_SETTLE_WINDOW)
        if cpu_seconds(pid) - c0 < _SETTLE_MAX_CPU * _SETTLE_WINDOW:
            break
    return loop.time() - begun


async def _loadgen(
    bench: Bench, target: Running, mode: str, calls: int, tag: int, *extra: str
) -> tuple[Controlled, Child]:
    argv = [
        sys.executable,
        "-m",
        "bench.loadgen",
        "--url",
        target.ws_url,
        "--mode",
        mode,
        "--calls",
        str(calls),
        "--run-tag",
        str(tag),
        "--batch-ticks",
        str(bench.batch_ticks),
        "--sndbuf",
        str(bench.sndbuf),
        *extra,
    ]
    child = await bench.procs.start(f"loadgen-{target.name}-{mode}-{calls}", argv, bench.load_cpus, control=True)
    return bench.procs.controlled(child), child


async def _finish_loadgen(bench: Bench, lg: Controlled, child: Child) -> dict[str, Any]:
    lg.send("stop")
    closed = await lg.expect("closed", 60)
    await bench.procs.finish(child, 10)
    return closed


def _interference(bench: Bench, u: Usage) -> dict[str, Any]:
    target_busy = u.core_busy.get(bench.target_core, 0.0)
    load_busy = u.core_busy.get(bench.load_core, 0.0)
    return {
        "target_core_busy_pct": target_busy,
        "target_core_other_pct": max(0.0, target_busy - u.cpu_percent),
        "target_core_steal_pct": u.core_steal.get(bench.target_core, 0.0),
        "load_core_busy_pct": load_busy,
        "load_side_pct": u.helpers_pct,
        "load_core_other_pct": max(0.0, load_busy - sum(u.helpers_pct.values())),
        "load_core_steal_pct": u.core_steal.get(bench.load_core, 0.0),
    }


def _sample(bench: Bench, target: Running, loadgen: Child) -> Sample:
    return Sample.take(target.pid, {**bench.helpers, "loadgen": loadgen.pid})


def _per_cpu_second(frames: int, cpu_s: float) -> float:
    return frames / cpu_s if cpu_s >= _MIN_CPU_S else math.nan


async def _busy(pid: int, window: float = 0.5) -> bool:
    """Whether the target used more than 5 % of a core over the next ``window`` seconds."""
    c0 = cpu_seconds(pid)
    await asyncio.sleep(window)
    return cpu_seconds(pid) - c0 > 0.05 * window


async def _delivery(bench: Bench, target: Running, sent: dict[str, Any]) -> dict[str, Any]:
    """Ask the verifier to account for the frames the load generator offered. Frames still
    missing after ``quiet`` seconds without any arrival count as lost, unless the target is still
    busy (working through a backlog): then the verifier waits again, up to the phase timeout."""
    offered_ticks: list[int] = sent["offered_ticks"]
    offered = 2 * sum(offered_ticks)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bench.phase_timeout
    while True:
        timeout = max(0.0, deadline - loop.time())
        bench.verifier.send("drain", expected=offered, quiet=bench.quiet, timeout=timeout)
        report = await bench.verifier.expect("report", timeout + 30)
        if report["outcome"] != "quiet" or loop.time() >= deadline or not await _busy(target.pid):
            break
    per_stream: dict[str, int] = report.pop("per_stream")
    missing = extra = 0
    for call, ticks in enumerate(offered_ticks):
        for track in TRACKS:
            got = per_stream.pop(f"{call}:{track}", 0)
            missing += max(0, ticks - got)
            extra += max(0, got - ticks)
    extra += sum(per_stream.values())  # streams nobody offered
    return {
        "offered": offered,
        "delivered": report["unique"],
        "missing": missing,
        "duplicates": report["duplicates"],
        "unexpected": extra + report["foreign"] + report["misrouted"],
        "stale": report["stale"],
        "exactly_once": missing == 0 and extra == 0 and report["duplicates"] == 0 and report["misrouted"] == 0,
        "latency_ms": report["latency_ms"],
        "drain_outcome": report["outcome"],
        "first_rx_ns": report["first_rx_ns"],
        "last_rx_ns": report["last_rx_ns"],
    }


async def _reset_verifier(bench: Bench) -> int:
    """A new phase tag, which the verifier now counts alone; returns it."""
    tag = bench.run_tag()
    bench.verifier.send("reset", tag=tag)
    await bench.verifier.expect("reset", 30)
    return tag


async def idle_phase(bench: Bench, target: Running, streams: int) -> dict[str, Any]:
    """RSS of ``streams`` open streams without media, scaled to 1000."""
    await settle(target.pid)
    rss0 = rss_bytes(target.pid)
    lg, child = await _loadgen(bench, target, "idle", streams, bench.run_tag())
    ready = await lg.expect("ready", bench.start_timeout + streams / 50)
    await settle(target.pid)
    rss1 = rss_bytes(target.pid)
    closed = await _finish_loadgen(bench, lg, child)
    return {
        "streams": streams,
        "rss_before_mib": rss0 / 2**20,
        "rss_after_mib": rss1 / 2**20,
        "rss_per_1000_mib": (rss1 - rss0) / streams * 1000 / 2**20,
        "connect_s": ready["connect_s"],
        "closed_by_server_early": closed["closed_by_server_early"],
    }


async def realtime_phase(bench: Bench, target: Running, calls: int, seconds: float) -> dict[str, Any]:
    """``calls`` two-track calls in real time: CPU % of the target's core and latency."""
    tag = await _reset_verifier(bench)
    lg, child = await _loadgen(bench, target, "realtime", calls, tag, "--seconds", str(seconds))
    await lg.expect("ready", bench.start_timeout + calls / 50)
    await settle(target.pid)
    before = _sample(bench, target, child)
    lg.send("go")
    sent = await lg.expect("sent", seconds + bench.phase_timeout)
    window = usage(before, _sample(bench, target, child))
    delivery = await _delivery(bench, target, sent)
    accounted = usage(before, Sample.take(target.pid))
    closed = await _finish_loadgen(bench, lg, child)
    return {
        "calls": calls,
        "seconds": seconds,
        "cpu_s": accounted.cpu,
        "cpu_pct": 100 * accounted.cpu / seconds,
        "cpu_pct_window": window.cpu_percent,
        "backlog_s": max(0.0, (delivery["last_rx_ns"] - sent["ended_ns"]) / 1e9),
        **_interference(bench, window),
        "send_lateness_ms": sent["lateness_ms"],
        "closed_by_server_early": closed["closed_by_server_early"],
        **delivery,
    }


async def max_phase(bench: Bench, target: Running, calls: int, ticks: int) -> dict[str, Any]:
    """Every call as fast as its socket takes it: frames per CPU-second of the target."""
    tag = await _reset_verifier(bench)
    lg, child = await _loadgen(bench, target, "max", calls, tag, "--ticks", str(ticks))
    await lg.expect("ready", bench.start_timeout + calls / 50)
    await settle(target.pid)
    before = _sample(bench, target, child)
    lg.send("go")
    sent = await lg.expect("sent", bench.phase_timeout)
    delivery = await _delivery(bench, target, sent)
    u = usage(before, _sample(bench, target, child))
    closed = await _finish_loadgen(bench, lg, child)
    if delivery["delivered"] == 0:
        raise BenchError(f"{target.name}: no frame arrived on NATS at maximum rate\n{target.child.log_tail()}")
    span = (delivery["last_rx_ns"] - sent["started_ns"]) / 1e9
    side_cpu_s = {name: pct * u.wall / 100 for name, pct in u.helpers_pct.items()}
    return {
        "calls": calls,
        "ticks_per_call": ticks,
        "cpu_s": u.cpu,
        "wall_s": span,
        "offered_per_cpu_s": _per_cpu_second(delivery["offered"], u.cpu),
        "delivered_per_cpu_s": _per_cpu_second(delivery["delivered"], u.cpu),
        "delivered_per_s": delivery["delivered"] / span if span > 0 else 0.0,
        "send_s": sent["elapsed_s"],
        "loadgen_frames_per_cpu_s": _per_cpu_second(delivery["offered"], side_cpu_s.get("loadgen", 0.0)),
        "verify_frames_per_cpu_s": _per_cpu_second(delivery["delivered"], side_cpu_s.get("verify", 0.0)),
        "backlog_s": max(0.0, (delivery["last_rx_ns"] - sent["ended_ns"]) / 1e9),
        **_interference(bench, u),
        "closed_by_server_early": closed["closed_by_server_early"],
        **delivery,
    }


async def routed_phases(
    bench: Bench,
    *,
    cpus: str,
    nats_url: str,
    cmd: list[str],
    extra: list[str],
    routes: Path,
    calls: int,
    seconds: float,
    max_calls: int,
    max_ticks: int,
    timeout: float,
) -> dict[str, Any]:
    """A gateway with a routes file (``--durable``, ``--transform``): one real-time phase and the
    maximum-rate phase, as ``{"realtime": ..., "max": ...}``."""
    argv = [*extra, "--routes", str(routes), "--route-source", "file"]
    target = await start_gateway(bench.procs, cpus, nats_url, cmd=cmd, extra=argv, timeout=timeout)
    try:
        realtime = await realtime_phase(bench, target, calls, seconds)
        mx = await max_phase(bench, target, max_calls, max_ticks)
    finally:
        await bench.procs.stop(target.child, grace=30)
    return {"realtime": realtime, "max": mx}


def realtime_per_cpu_s(phase: dict[str, Any]) -> float:
    """Delivered frames per CPU-second of the target in a real-time phase."""
    cpu = float(phase["cpu_s"])
    return phase["delivered"] / cpu if cpu > 0 else math.nan

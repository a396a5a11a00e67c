"""The whole run: one nats-server and one verifier, then every target, repeat and phase in turn.

Targets alternate within each repeat (gateway, naive, [lean,] gateway, naive, ...) so that slow
drifts in background load hit them alike. Each repeat starts the target afresh (a clean RSS baseline),
measures idle RSS, then the real-time call counts, then maximum rate (last: it leaves the most
garbage behind). Scaling (``--workers`` 1 on one core vs 2 on two) follows, for the gateway only,
when it accepts the flag. Every process is stopped in ``finally``.
"""

from __future__ import annotations

import itertools
import os
import platform
import subprocess
import sys
import time
from typing import Any

from bench import durable, layers, transform
from bench.control import BenchError
from bench.nats_server import start_nats
from bench.options import Options
from bench.phases import Bench, idle_phase, max_phase, realtime_phase
from bench.procs import REPO_ROOT, Processes, cpu_set
from bench.targets import Running, default_gateway_cmd, gateway_accepts, start_bridge, start_gateway


def _say(text: str) -> None:
    print(text, flush=True)


def _first_cpu(cpus: str) -> int:
    return min(cpu_set(cpus))


def _meta(opts: Options, gateway_cmd: list[str]) -> dict[str, Any]:
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": rev.stdout.strip() or None,
        "python": platform.python_version(),
        "cpu_model": model,
        "cpus_online": os.cpu_count(),
        "target_cpus": opts.target_cpus,
        "load_cpus": opts.load_cpus,
        "gateway_cmd": [*gateway_cmd, *opts.gateway_args],
        "loadavg_start": os.getloadavg(),
        "nice": opts.nice,
        "smoke": opts.smoke,
        "repeats": opts.repeats,
        "calls": list(opts.calls),
        "seconds": opts.seconds,
        "max_calls": opts.max_calls,
        "max_ticks": opts.max_ticks,
        "idle_streams": opts.idle_streams,
        "durable": opts.durable,
        "transform": opts.transform,
        "layers": opts.layers,
    }


async def _start(bench: Bench, opts: Options, name: str, gateway_cmd: list[str], nats_url: str) -> Running:
    if name == "gateway":
        return await start_gateway(
            bench.procs,
            opts.target_cpus,
            nats_url,
            cmd=gateway_cmd,
            extra=list(opts.gateway_args),
            timeout=opts.start_timeout,
        )
    return await start_bridge(bench.procs, name, opts.target_cpus, nats_url, opts.start_timeout)


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


async def _one_target(bench: Bench, opts: Options, target: Running, runs: dict[str, Any], tag: str) -> None:
    idle = await idle_phase(bench, target, opts.idle_streams)
    runs["idle"].append(idle)
    _say(f"{tag} idle: {idle['rss_per_1000_mib']:.1f} MiB per 1000 streams (at rest {idle['rss_before_mib']:.0f} MiB)")
    for calls in opts.calls:
        rt = await realtime_phase(bench, target, calls, opts.seconds)
        runs["realtime"][str(calls)].append(rt)
        lat = rt["latency_ms"]
        _say(
            f"{tag} {calls} calls: CPU {rt['cpu_pct']:.1f}%, latency p50 {lat['p50']:.2f} ms p99 {lat['p99']:.2f} ms, "
            f"delivered {rt['delivered']}/{rt['offered']} (duplicates {rt['duplicates']})"
        )
    mx = await max_phase(bench, target, opts.max_calls, opts.max_ticks)
    runs["max"].append(mx)
    _say(
        f"{tag} max rate: {mx['offered_per_cpu_s']:,.0f} offered frames/CPU-s, {mx['delivered_per_cpu_s']:,.0f} "
        f"delivered/CPU-s, delivered {mx['delivered']}/{mx['offered']} ({_percent(mx['delivered'], mx['offered'])}), "
        f"{mx['delivered_per_s']:,.0f} frames/s"
    )


async def _scaling(bench: Bench, opts: Options, gateway_cmd: list[str], nats_url: str) -> dict[str, Any]:
    if "gateway" not in opts.targets:
        return {"status": "skipped", "note": "the gateway is not measured in this run (--only)"}
    if not opts.scaling:
        return {"status": "skipped", "note": "--no-scaling"}
    if not gateway_accepts(gateway_cmd, "--workers"):
        return {"status": "skipped", "note": "the gateway does not accept --workers (not in its --help)"}
    two = f"{opts.target_cpus},{opts.load_cpus}"
    result: dict[str, Any] = {
        "status": "measured",
        "note": (
            f"1 worker on CPU {opts.target_cpus} vs 2 workers on CPUs {two}; with 2 workers the load generator, "
            "verifier and nats-server share a core with a worker, so the figure understates the scaling"
        ),
        "workers": {"1": [], "2": []},
    }
    for r in range(opts.repeats):
        for workers, cpus in (("1", opts.target_cpus), ("2", two)):
            args = [*opts.gateway_args, "--workers", workers]
            target = await start_gateway(
                bench.procs, cpus, nats_url, cmd=gateway_cmd, extra=args, timeout=opts.start_timeout
            )
            try:
                mx = await max_phase(bench, target, opts.max_calls, opts.max_ticks)
            finally:
                await bench.procs.stop(target.child, grace=30)
            result["workers"][workers].append(mx)
            _say(
                f"[scaling r{r + 1}/{opts.repeats}] {workers} worker(s): {mx['delivered_per_s']:,.0f} frames/s, "
                f"{mx['delivered_per_cpu_s']:,.0f} frames/CPU-s, delivered {_percent(mx['delivered'], mx['offered'])}"
            )
    return result


async def run(opts: Options) -> dict[str, Any]:
    """Measure everything ``opts`` asks for; the raw figures of every repeat. A failed step ends
    the run but keeps what was measured before it (``error`` says what failed)."""
    gateway_cmd = list(opts.gateway_cmd) if opts.gateway_cmd else default_gateway_cmd()
    procs = Processes(opts.log_dir, opts.nice)
    runs: dict[str, Any] = {
        name: {"idle": [], "realtime": {str(c): [] for c in opts.calls}, "max": []} for name in opts.targets
    }
    meta = _meta(opts, gateway_cmd)
    scaling: dict[str, Any] = {"status": "skipped", "note": "the run ended before it"}
    durable_runs: list[dict[str, Any]] = []
    transform_runs: list[dict[str, Any]] = []
    layer_runs: list[dict[str, Any]] = []
    error: str | None = None
    os.sched_setaffinity(0, cpu_set(opts.load_cpus))  # the runner's own sampling stays off the target's CPU
    try:
        with_durable = opts.durable and "gateway" in opts.targets
        nats, nats_url = await start_nats(procs, opts.load_cpus, opts.start_timeout, jetstream=with_durable)
        verifier_child = await procs.start(
            "verify", [sys.executable, "-m", "bench.verify", "--nats-url", nats_url], opts.load_cpus, control=True
        )
        verifier = procs.controlled(verifier_child)
        await verifier.expect("ready", opts.start_timeout)
        bench = Bench(
            procs=procs,
            verifier=verifier,
            helpers={"nats-server": nats.pid, "verify": verifier_child.pid},
            load_cpus=opts.load_cpus,
            target_core=_first_cpu(opts.target_cpus),
            load_core=_first_cpu(opts.load_cpus),
            start_timeout=opts.start_timeout,
            phase_timeout=opts.phase_timeout,
            quiet=opts.quiet,
            batch_ticks=opts.batch_ticks,
            sndbuf=opts.sndbuf,
            _tags=itertools.count(1),
        )
        for r in range(opts.repeats):
            for name in opts.targets:
                target = await _start(bench, opts, name, gateway_cmd, nats_url)
                try:
                    await _one_target(bench, opts, target, runs[name], f"[{name} r{r + 1}/{opts.repeats}]")
                finally:
                    await procs.stop(target.child, grace=30)
            if with_durable:
                durable_runs.append(await _durable(bench, opts, gateway_cmd, nats_url, runs["gateway"]))
                _say(durable.line(f"[durable r{r + 1}/{opts.repeats}]", durable_runs[-1], durable_runs[-1]["core"]))
            if opts.transform is not None and "gateway" in opts.targets:
                transform_runs.append(await _transform(bench, opts, gateway_cmd, nats_url, runs["gateway"]))
                tag = f"[transform r{r + 1}/{opts.repeats}]"
                _say(transform.line(tag, opts.transform, transform_runs[-1], transform_runs[-1]["plain"]))
            if opts.layers and "gateway" in opts.targets:
                layer_runs.append(await _layers(bench, opts, nats_url, runs["gateway"]))
                _say(layers.line(f"[layers r{r + 1}/{opts.repeats}]", layer_runs[-1]["cuts"], layer_runs[-1]["whole"]))
        scaling = await _scaling(bench, opts, gateway_cmd, nats_url)
        if scaling["status"] == "skipped":
            _say(f"[scaling] skipped: {scaling['note']}")
    except BenchError as exc:
        error = f"{exc}\n(logs of every process: {opts.log_dir})"
    finally:
        await procs.aclose()
    meta["loadavg_end"] = os.getloadavg()
    return {
        "meta": meta,
        "runs": runs,
        "scaling": scaling,
        "durable": durable_runs,
        "transform": transform_runs,
        "layers": layer_runs,
        "error": error,
    }


async def _transform(
    bench: Bench, opts: Options, gateway_cmd: list[str], nats_url: str, plain: dict[str, Any]
) -> dict[str, Any]:
    """The transforming route's phases of this repeat, with the plain route's of the same repeat."""
    assert opts.transform is not None
    measured = await transform.measure(
        bench,
        cpus=opts.target_cpus,
        nats_url=nats_url,
        cmd=gateway_cmd,
        extra=list(opts.gateway_args),
        routes=transform.write_routes(opts.log_dir, opts.transform),
        calls=opts.calls[0],
        seconds=opts.seconds,
        max_calls=opts.max_calls,
        max_ticks=opts.max_ticks,
        timeout=opts.start_timeout,
    )
    same_repeat = {"realtime": plain["realtime"][str(opts.calls[0])][-1], "max": plain["max"][-1]}
    return {**measured, "plain": same_repeat}


async def _layers(bench: Bench, opts: Options, nats_url: str, whole: dict[str, Any]) -> dict[str, Any]:
    """The cut gateways' phases of this repeat, with the whole gateway's phase of the same repeat."""
    cuts = await layers.measure(
        bench,
        cpus=opts.target_cpus,
        nats_url=nats_url,
        extra=list(opts.gateway_args),
        calls=opts.calls[0],
        seconds=opts.seconds,
        timeout=opts.start_timeout,
    )
    return {"cuts": cuts, "whole": whole["realtime"][str(opts.calls[0])][-1]}


async def _durable(
    bench: Bench, opts: Options, gateway_cmd: list[str], nats_url: str, core: dict[str, Any]
) -> dict[str, Any]:
    """The JetStream route's phases of this repeat, with the core route's of the same repeat."""
    measured = await durable.measure(
        bench,
        cpus=opts.target_cpus,
        nats_url=nats_url,
        cmd=gateway_cmd,
        extra=list(opts.gateway_args),
        routes=durable.write_routes(opts.log_dir),
        calls=opts.calls[0],
        seconds=opts.seconds,
        max_calls=opts.max_calls,
        max_ticks=opts.max_ticks,
        timeout=opts.start_timeout,
    )
    same_repeat = {"realtime": core["realtime"][str(opts.calls[0])][-1], "max": core["max"][-1]}
    return {**measured, "core": same_repeat}

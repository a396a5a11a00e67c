"""``--transform RATE``: the gateway with a route that also publishes an L16 copy, in the same run.

The same gateway command gets a routes file (``--routes``) whose one route publishes every
stream's audio as it came on the default subjects, and a copy transformed to L16 at ``RATE``
(G.711 decoded and resampled, once per frame, per stream and track) on ``asr.{call_id}.{track}``
(``spec.target.copies``). The verifier subscribes to ``audio.>`` as for the plain route, so
delivery of the originals is accounted exactly as in the other phases; the copies are published
to nats-server, which has no subscriber for them. So the figure is the whole cost of a route
that serves a speech recogniser beside the original: the transform and a second message per
frame. Per repeat, right after the plain gateway's phases, the transforming gateway runs the
first real-time call count and the maximum-rate phase; the runner prints frames per CPU-second
of both side by side.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.phases import Bench, max_phase, realtime_phase
from bench.targets import start_gateway

RATES = (8000, 16000, 24000, 48000)


def routes(rate: int) -> str:
    return f"""apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {{name: transform}}
spec:
  match: {{controlId: "*"}}
  target:
    subject: "audio.{{call_id}}.{{track}}"
    copies:
      - subject: "asr.{{call_id}}.{{track}}"
        transform: {{encoding: L16, sampleRate: {rate}}}
"""


def write_routes(directory: Path, rate: int) -> Path:
    """The routes file of the transforming gateway."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "transform-routes.yaml"
    path.write_text(routes(rate))
    return path


async def measure(
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
    """One repeat of the transforming route: a real-time phase and the maximum-rate phase."""
    argv = [*extra, "--routes", str(routes), "--route-source", "file"]
    target = await start_gateway(bench.procs, cpus, nats_url, cmd=cmd, extra=argv, timeout=timeout)
    try:
        realtime = await realtime_phase(bench, target, calls, seconds)
        mx = await max_phase(bench, target, max_calls, max_ticks)
    finally:
        await bench.procs.stop(target.child, grace=30)
    return {"realtime": realtime, "max": mx}


def _realtime_per_cpu_s(phase: dict[str, Any]) -> float:
    cpu = float(phase["cpu_s"])
    return phase["delivered"] / cpu if cpu > 0 else math.nan


def line(tag: str, rate: int, transformed: dict[str, Any], plain: dict[str, Any]) -> str:
    """The two routes side by side (``plain``: the plain gateway's phases of the same repeat)."""
    rt, mx = transformed["realtime"], transformed["max"]
    per_cpu_s = _realtime_per_cpu_s(rt), _realtime_per_cpu_s(plain["realtime"])
    return (
        f"{tag} route with an L16/{rate} copy vs plain route, frames per CPU-second: "
        f"{rt['calls']} real-time calls {per_cpu_s[0]:,.0f} vs {per_cpu_s[1]:,.0f} "
        f"(CPU {rt['cpu_pct']:.1f}% vs {plain['realtime']['cpu_pct']:.1f}%); "
        f"max rate (delivered) {mx['delivered_per_cpu_s']:,.0f} vs {plain['max']['delivered_per_cpu_s']:,.0f}, "
        f"delivered {mx['delivered']}/{mx['offered']} vs {plain['max']['delivered']}/{plain['max']['offered']}"
    )

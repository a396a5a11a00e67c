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

from pathlib import Path
from typing import Any

from bench.phases import Bench, realtime_per_cpu_s, routed_phases

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


async def measure(bench: Bench, *, nats_url: str, **phases: Any) -> dict[str, Any]:
    """One repeat of the transforming route: a real-time phase and the maximum-rate phase."""
    return await routed_phases(bench, nats_url=nats_url, **phases)


def line(tag: str, rate: int, transformed: dict[str, Any], plain: dict[str, Any]) -> str:
    """The two routes side by side (``plain``: the plain gateway's phases of the same repeat)."""
    rt, mx = transformed["realtime"], transformed["max"]
    per_cpu_s = realtime_per_cpu_s(rt), realtime_per_cpu_s(plain["realtime"])
    return (
        f"{tag} route with an L16/{rate} copy vs plain route, frames per CPU-second: "
        f"{rt['calls']} real-time calls {per_cpu_s[0]:,.0f} vs {per_cpu_s[1]:,.0f} "
        f"(CPU {rt['cpu_pct']:.1f}% vs {plain['realtime']['cpu_pct']:.1f}%); "
        f"max rate (delivered) {mx['delivered_per_cpu_s']:,.0f} vs {plain['max']['delivered_per_cpu_s']:,.0f}, "
        f"delivered {mx['delivered']}/{mx['offered']} vs {plain['max']['delivered']}/{plain['max']['offered']}"
    )

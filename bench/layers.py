"""``--layers``: what each layer of the gateway's per-frame path costs, in place, in the same run.

Per repeat, right after the gateway's own phases, the gateway is started once per cut of
:mod:`bench.cut` (``read``, ``decode``, ``session``, ``outbox``) and carries the first real-time
call count for the phase's length, like the whole gateway did. The cut gateways deliver no audio
(the verifier's report says so; it is not an error here); their CPU is what counts. The runner
prints each cut's CPU next to the whole gateway's of the same repeat, and each layer's share: the
difference from the cut before it (``link``: the whole gateway against the ``outbox`` cut, i.e.
writing the batches and confirming them).

The cut gateways are this tree's (``python -m bench.cut`` imports ``gateway`` from the
benchmark's interpreter), whatever ``--gateway-cmd`` says; ``--gateway-args`` are passed on.
"""

from __future__ import annotations

import sys
from typing import Any

from bench.cut import CUTS
from bench.phases import Bench, realtime_phase
from bench.targets import start_gateway

LAYERS = (*CUTS, "link")
"""The layer each step adds: a cut's name is the last layer it runs, ``link`` the rest."""


async def measure(
    bench: Bench,
    *,
    cpus: str,
    nats_url: str,
    extra: list[str],
    calls: int,
    seconds: float,
    timeout: float,
) -> dict[str, Any]:
    """One repeat: each cut's real-time phase (``calls`` calls for ``seconds``), as ``{cut: phase}``."""
    phases: dict[str, Any] = {}
    for cut in CUTS:
        cmd = [sys.executable, "-m", "bench.cut", cut, "serve"]
        target = await start_gateway(bench.procs, cpus, nats_url, cmd=cmd, extra=extra, timeout=timeout)
        try:
            phases[cut] = await realtime_phase(bench, target, calls, seconds)
        finally:
            await bench.procs.stop(target.child, grace=30)
    return phases


def cpu_by_layer(cuts: dict[str, Any], whole: dict[str, Any]) -> dict[str, float]:
    """CPU % of the target's core each layer adds (``whole``: the gateway's phase of the same repeat)."""
    levels = [float(cuts[cut]["cpu_pct"]) for cut in CUTS] + [float(whole["cpu_pct"])]
    return {layer: levels[i] - (levels[i - 1] if i else 0.0) for i, layer in enumerate(LAYERS)}


def line(tag: str, cuts: dict[str, Any], whole: dict[str, Any]) -> str:
    parts = ", ".join(f"{cut} {cuts[cut]['cpu_pct']:.1f}%" for cut in CUTS)
    return (
        f"{tag} {whole['calls']} calls, CPU of the gateway cut after each layer: {parts}; "
        f"whole gateway {whole['cpu_pct']:.1f}%"
    )

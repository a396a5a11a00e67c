"""``--durable``: the gateway with a JetStream route, next to its core NATS route, in the same run.

The same gateway command gets a routes file (``--routes``) whose one route sends every stream's
audio and events to the default subjects, but through JetStream stream ``BENCH`` (memory storage,
bounded in bytes, oldest discarded), so every frame waits for the stream's acknowledgement. The
verifier subscribes to ``audio.>`` as for core NATS: a stored message reaches core subscribers
too, so delivery is accounted exactly as for the other phases. Per repeat, right after the core
gateway's phases, the durable gateway runs the first real-time call count and the maximum-rate
phase; the runner prints frames per CPU-second of both routes side by side. nats-server gets
JetStream (``jetstream { store_dir }``) only in runs with ``--durable``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import nats
from nats.js.api import DiscardPolicy, StorageType, StreamConfig

from bench.phases import Bench, realtime_per_cpu_s, routed_phases

STREAM = "BENCH"
_MAX_BYTES = 1 << 30
"""Stored bytes kept: a maximum-rate phase stores a few hundred MB at most; older go first."""
ROUTES = f"""apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {{name: durable}}
spec:
  match: {{controlId: "*"}}
  target:
    subject: "audio.{{call_id}}.{{track}}"
    eventsSubject: "events.{{call_id}}"
    jetstream: {{stream: {STREAM}}}
"""


def write_routes(directory: Path) -> Path:
    """The routes file of the durable gateway."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "durable-routes.yaml"
    path.write_text(ROUTES)
    return path


async def prepare(nats_url: str) -> None:
    """Create the stream, or empty it (a clean store for each repeat)."""
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        config = StreamConfig(
            name=STREAM,
            subjects=["audio.>", "events.>"],
            storage=StorageType.MEMORY,
            max_bytes=_MAX_BYTES,
            discard=DiscardPolicy.OLD,
        )
        with contextlib.suppress(nats.js.errors.BadRequestError):  # exists with other settings: reuse it
            await js.add_stream(config)
        await js.purge_stream(STREAM)
    finally:
        await nc.close()


async def measure(bench: Bench, *, nats_url: str, **phases: Any) -> dict[str, Any]:
    """One repeat of the durable route: a real-time phase and the maximum-rate phase."""
    await prepare(nats_url)
    return await routed_phases(bench, nats_url=nats_url, **phases)


def line(tag: str, durable: dict[str, Any], core: dict[str, Any]) -> str:
    """The two routes side by side (``core``: the core gateway's phases of the same repeat)."""
    rt, mx = durable["realtime"], durable["max"]
    return (
        f"{tag} durable (JetStream) route vs core NATS route, frames per CPU-second: "
        f"{rt['calls']} real-time calls {realtime_per_cpu_s(rt):,.0f} vs {realtime_per_cpu_s(core['realtime']):,.0f}; "
        f"max rate (delivered) {mx['delivered_per_cpu_s']:,.0f} vs {core['max']['delivered_per_cpu_s']:,.0f}, "
        f"delivered {mx['delivered']}/{mx['offered']} vs {core['max']['delivered']}/{core['max']['offered']}"
    )

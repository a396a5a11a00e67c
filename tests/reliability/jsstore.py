"""What a JetStream stream holds, read back with nats-py, and durable routes for tests.

Ground truth for the durable-route tests: the stream itself, read from its first message to its
last with an ephemeral pull consumer, independent of the gateway and of the replay tool.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from gateway.tools.simulate import CallReport


@dataclass(frozen=True)
class Stored:
    subject: str
    headers: dict[str, str]
    data: bytes


async def create_stream(url: str, name: str, subjects: Sequence[str], **config: object) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(StreamConfig(name=name, subjects=list(subjects), **config))  # type: ignore[arg-type]
    finally:
        await nc.close()


async def read_stream(url: str, name: str) -> list[Stored]:
    """Every message of stream ``name``, in stream order."""
    nc = await nats.connect(url)
    out: list[Stored] = []
    try:
        js = nc.jetstream()
        total = int((await js.stream_info(name)).state.messages)
        if not total:
            return out
        consumer = f"read-{uuid.uuid4().hex[:12]}"
        await js.add_consumer(
            name,
            ConsumerConfig(
                name=consumer,
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.ALL,
                inactive_threshold=30.0,
            ),
        )
        sub = await js.pull_subscribe_bind(consumer, stream=name)
        while len(out) < total:
            for msg in await sub.fetch(min(1000, total - len(out)), timeout=10):
                out.append(Stored(msg.subject, dict(msg.headers or {}), msg.data))
        await js.delete_consumer(name, consumer)
    finally:
        await nc.close()
    return out


def durable_route(
    directory: Path,
    stream: str,
    *,
    subject: str = "calls.{call_id}.{track}",
    events_subject: str = "calls.ev.{call_id}",
    name: str = "durable",
) -> Path:
    """A routes file with one catch-all route into JetStream stream ``stream``."""
    path = directory / f"routes-{name}.yaml"
    path.write_text(
        f"""apiVersion: streamgateway.io/v1alpha1
kind: StreamRoute
metadata: {{name: {name}}}
spec:
  match: {{controlId: "*"}}
  target:
    subject: "{subject}"
    eventsSubject: "{events_subject}"
    jetstream: {{stream: {stream}}}
"""
    )
    return path


def file_routes(path: Path) -> dict[str, object]:
    """Gateway overrides that serve the routes in ``path``."""
    return {"routing.source": "file", "routing.file": path}


@dataclass
class TrackCheck:
    frames: int
    """Distinct frames stored."""
    copies: int
    """Frames stored more than once."""
    missing: list[int]
    wrong_id: int


def check_track(stored: list[Stored], call: CallReport, track: str, subject: str) -> TrackCheck:
    """Compare what the stream holds for one track with what the simulator sent."""
    seen: dict[int, bytes] = {}
    copies = wrong_id = 0
    for msg in stored:
        if msg.subject != subject:
            continue
        seq = int(msg.headers["Sgw-Seq"])
        if msg.headers.get("Nats-Msg-Id") != f"{call.stream_id}:{track}:{seq}":
            wrong_id += 1
        if seq in seen:
            copies += 1
            continue
        seen[seq] = msg.data
        assert msg.data == call.sent[track][seq - 1], f"{subject}: Sgw-Seq {seq} carries the wrong payload"
    missing = [seq for seq in range(1, len(call.sent[track]) + 1) if seq not in seen]
    return TrackCheck(len(seen), copies, missing, wrong_id)

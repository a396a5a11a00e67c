"""Benchmarks that print figures, each against a reference measured in the same run.

1. Protocol core: decode + session per media frame, against ``json.loads`` + ``base64`` of the same
   frames (the least any JSON gateway must do).
2. Route transforms (:mod:`tests.bench.transforms`): each conversion per 20 ms frame, and the
   shell's per-frame path for a plain route, a transformed one and one with copies.
3. End to end: simulated calls at maximum rate through a real gateway into an embedded nats-server:
   frames/s, publish latency percentiles, and a raw nats-py publish loop of the same messages as
   the reference for what the broker connection alone costs.

Usage: ``python -m tests.bench [--frames N] [--calls N] [--seconds S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from collections.abc import Callable

import nats
from prometheus_client import CollectorRegistry

from gateway.protocol.dialects.twilio import decode
from gateway.protocol.events import Start
from gateway.protocol.session import SessionConfig, StreamSession
from gateway.server import GatewayServer
from gateway.settings import load_settings
from sgw_routes.model import RoutingTable, default_route
from tests.bench import transforms


def _frames(n: int) -> list[str]:
    payload = base64.b64encode(bytes(range(160))).decode()
    return [
        json.dumps(
            {
                "event": "media",
                "sequenceNumber": str(i + 2),
                "media": {
                    "track": "inbound" if i % 2 else "outbound",
                    "chunk": str(i // 2 + 1),
                    "timestamp": str((i // 2) * 20),
                    "payload": payload,
                },
            }
        )
        for i in range(n)
    ]


def _best(fn: Callable[[], None], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_protocol(n: int) -> None:
    frames = _frames(n)
    start = json.dumps(
        {
            "event": "start",
            "start": {
                "streamSid": "s",
                "callSid": "c",
                "tracks": ["inbound", "outbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
            },
        }
    )
    table = RoutingTable(version=1, default=default_route())

    def core() -> None:
        session = StreamSession(tables=lambda: table, config=SessionConfig(), traceparent=lambda _: "00-x-01")
        ev = decode(start)
        assert isinstance(ev, Start)
        session.receive(ev, 0.0)
        receive = session.receive
        for f in frames:
            receive(decode(f), 0.0)

    def reference() -> None:
        for f in frames:
            msg = json.loads(f)
            base64.b64decode(msg["media"]["payload"])

    t_core = _best(core)
    t_ref = _best(reference)
    print(f"protocol core   : {t_core / n * 1e6:6.2f} us/frame  ({n / t_core:,.0f} frames/s on one core)")
    print(f"reference       : {t_ref / n * 1e6:6.2f} us/frame  (json.loads + base64 only)")
    print(f"ratio core/ref  : {t_core / t_ref:5.2f}")


async def bench_end_to_end(calls: int, seconds: float) -> None:
    registry = CollectorRegistry()
    settings = load_settings({}, {"server.port": 0, "server.internal_port": 0, "server.host": "127.0.0.1"})
    server = GatewayServer(settings, registry=registry)
    endpoints = await server.start()
    try:
        nc = await nats.connect(endpoints.nats_url)
        received = 0
        done = asyncio.Event()
        sent = calls * 2 * int(seconds * 50)

        async def on_msg(msg: object) -> None:
            nonlocal received
            received += 1
            if received >= sent:
                done.set()

        await nc.subscribe("audio.>", cb=on_msg)
        await nc.flush()
        # The simulator runs in its own process so that the gateway's event loop is measured alone.
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway",
            "simulate",
            "--url",
            endpoints.ws_url,
            "--calls",
            str(calls),
            "--track",
            "both",
            "--duration",
            str(seconds),
            "--max-rate",
            stdout=asyncio.subprocess.DEVNULL,
        )
        if await proc.wait() != 0:
            raise SystemExit("simulate failed")
        await asyncio.wait_for(done.wait(), 60)
        elapsed = time.perf_counter() - t0
        buckets = [
            (float(s.labels["le"]), s.value)
            for f in registry.collect()
            if f.name == "sgw_publish_latency_seconds"
            for s in f.samples
            if s.name.endswith("_bucket")
        ]
        print(
            f"end to end      : {calls} calls x 2 tracks x {seconds:g}s audio = {sent} frames in {elapsed:.2f}s -> {sent / elapsed:,.0f} frames/s (received {received})"
        )
        print(
            f"publish latency : p50 <= {_quantile(buckets, 0.5) * 1e3:.1f} ms, p99 <= {_quantile(buckets, 0.99) * 1e3:.1f} ms (histogram bucket bounds)"
        )
        payload = bytes(160)
        headers = {
            "Sgw-Seq": "1",
            "Sgw-Ts": "0",
            "Sgw-Codec": "PCMU/8000",
            "Sgw-Stream-Id": "s",
            "traceparent": "00-x-01",
        }
        t1 = time.perf_counter()
        for i in range(sent):
            await nc.publish(f"bench.{i % calls}.inbound", payload, headers=headers)
        await nc.flush()
        raw = time.perf_counter() - t1
        print(
            f"reference       : raw nats-py publish of {sent} messages with the same headers: {sent / raw:,.0f} msgs/s"
        )
        print(
            f"ratio gw/raw    : {(sent / elapsed) / (sent / raw):5.2f} (share of the bare client rate the whole gateway reaches)"
        )
        await nc.close()
    finally:
        await server.drain_and_stop()


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench")
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    bench_protocol(args.frames)
    transforms.main()
    asyncio.run(bench_end_to_end(args.calls, args.seconds))


if __name__ == "__main__":
    main()

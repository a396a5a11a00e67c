"""The load generator process: simulated provider calls over raw asyncio WebSocket connections.

Usage: ``python -m bench.loadgen --url ws://127.0.0.1:P/stream --mode max|realtime|idle --calls N``.
Every call opens a stream (``connected`` + ``start``) before the runner says ``go``, so that the
measured window holds media only. Modes:

* ``max``: each call sends ``--ticks`` ticks (two frames each) as fast as its socket accepts them,
  ``--batch-ticks`` per ``transport.write``; a connection stops producing while its transport is
  paused (write buffer above its high-water mark) and resumes from ``resume_writing``.
* ``realtime``: each call sends one tick every 20 ms for ``--seconds``, at absolute deadlines
  ``t0 + phase + k * 20 ms`` of the monotonic clock, the calls' phases spread evenly over 20 ms;
  late ticks are sent at once (never skipped) and the lateness is reported. Like a provider, it
  does not wait for a target that reads slowly: what piles up shows as latency.
* ``idle``: the streams stay open without media until ``stop`` (for RSS per idle stream).

Control (JSON lines, :mod:`bench.control`): events ``ready`` -> command ``go`` -> event ``sent``
-> command ``stop`` -> event ``closed``; ``idle`` skips ``go``/``sent``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import sys
import time
from array import array
from typing import Any

from bench.control import BenchError, Commands, emit
from bench.stats import percentile
from bench.wire import MAX_CALLS, TICK_SECONDS, MediaStream, opening_frames, stop_frame
from bench.wsclient import WsClient, connect

_CLOSE_TIMEOUT = 15.0


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        top = hard if hard == resource.RLIM_INFINITY else min(hard, max(needed, soft))
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
        if top < needed:
            raise BenchError(f"{needed} file descriptors needed, the hard limit is {hard}")


async def open_calls(
    url: str, calls: int, run_tag: int, sndbuf: int, concurrency: int
) -> tuple[list[WsClient], list[MediaStream]]:
    """Connect every call and send its ``connected`` and ``start``."""
    gate = asyncio.Semaphore(concurrency)
    clients: list[WsClient | None] = [None] * calls

    async def one(i: int) -> None:
        async with gate:
            client = await connect(url, sndbuf=sndbuf)
        client.write(opening_frames(run_tag, i))
        clients[i] = client

    try:
        async with asyncio.TaskGroup() as tg:
            for i in range(calls):
                tg.create_task(one(i))
    except BaseException:
        for c in clients:
            if c is not None:
                c.abort()
        raise
    opened = [c for c in clients if c is not None]  # all of them: the task group raised otherwise
    return opened, [MediaStream(i, run_tag) for i in range(calls)]


class _MaxPump:
    """Writes one call's ticks while its transport accepts them (called again on resume)."""

    def __init__(self, client: WsClient, stream: MediaStream, ticks: int, batch: int) -> None:
        self.client, self.stream, self.remaining, self.batch = client, stream, ticks, batch
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        client.on_resume = self.fill

    def fill(self) -> None:
        client, stream = self.client, self.stream
        while self.remaining and not client.paused and client.open:
            n = min(self.batch, self.remaining)
            client.write(stream.ticks_batch(n, time.monotonic_ns()))
            self.remaining -= n
        if (not self.remaining or not client.open) and not self.done.done():
            self.done.set_result(None)


async def run_max(clients: list[WsClient], streams: list[MediaStream], ticks: int, batch: int) -> dict[str, Any]:
    pumps = [_MaxPump(c, s, ticks, batch) for c, s in zip(clients, streams, strict=True)]
    for p in pumps:
        p.fill()
    await asyncio.gather(*(p.done for p in pumps))
    return {}


async def run_realtime(clients: list[WsClient], streams: list[MediaStream], seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    calls, ticks = len(clients), round(seconds / TICK_SECONDS)
    phases = [i * TICK_SECONDS / calls for i in range(calls)]
    t0 = loop.time() + 0.05
    lateness = array("d")
    done: asyncio.Future[None] = loop.create_future()
    k = i = 0

    def pump() -> None:
        nonlocal k, i
        monotonic = time.monotonic
        while k < ticks:
            due = t0 + k * TICK_SECONDS + phases[i]
            now = monotonic()
            if due > now:
                loop.call_at(due, pump)
                return
            client = clients[i]
            if client.open:
                client.write(streams[i].tick(time.monotonic_ns()))
                lateness.append(now - due)
            i += 1
            if i == calls:
                i, k = 0, k + 1
        done.set_result(None)

    loop.call_at(t0, pump)
    await done
    ordered = sorted(lateness)
    return {
        "lateness_ms": {
            "p50": percentile(ordered, 50) * 1e3,
            "p99": percentile(ordered, 99) * 1e3,
            "max": (ordered[-1] if ordered else 0.0) * 1e3,
        }
    }


async def close_calls(clients: list[WsClient], streams: list[MediaStream]) -> dict[str, Any]:
    """``stop`` and a close frame on every stream, then wait (bounded) for the server to close."""
    early = sum(1 for c in clients if not c.open)
    for c, s in zip(clients, streams, strict=True):
        c.send_close(stop_frame(s.next_sequence))
    pending = [c.closed for c in clients if not c.closed.done()]
    if pending:
        await asyncio.wait(pending, timeout=_CLOSE_TIMEOUT)
    lingering = 0
    for c in clients:
        if not c.closed.done():
            lingering += 1
            c.abort()
    codes: dict[str, int] = {}
    for c in clients:
        key = str(c.server_close_code)
        codes[key] = codes.get(key, 0) + 1
    return {"closed_by_server_early": early, "server_close_codes": codes, "not_closed_in_time": lingering}


async def main_async(args: argparse.Namespace) -> None:
    commands = await Commands.open()
    _raise_fd_limit(args.calls + 64)
    t = time.monotonic()
    clients, streams = await open_calls(args.url, args.calls, args.run_tag, args.sndbuf, args.connect_concurrency)
    try:
        emit("ready", streams=len(clients), connect_s=time.monotonic() - t)
        if args.mode != "idle":
            await commands.expect("go")
            started_ns = time.monotonic_ns()
            if args.mode == "max":
                extra = await run_max(clients, streams, args.ticks, args.batch_ticks)
            else:
                extra = await run_realtime(clients, streams, args.seconds)
            emit(
                "sent",
                started_ns=started_ns,
                ended_ns=time.monotonic_ns(),
                elapsed_s=(time.monotonic_ns() - started_ns) / 1e9,
                offered_ticks=[s.ticks for s in streams],
                open_streams=sum(1 for c in clients if c.open),
                **extra,
            )
        message = await commands.next()
        if message.get("cmd") != "stop":
            raise BenchError(f"expected 'stop', got {message!r}")
        emit("closed", **await close_calls(clients, streams))
    finally:
        for c in clients:
            c.abort()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="ws://host:port/stream of the target")
    p.add_argument("--mode", choices=["max", "realtime", "idle"], required=True)
    p.add_argument("--calls", type=int, required=True, help="concurrent calls (streams)")
    p.add_argument("--ticks", type=int, default=1000, help="max: 20 ms ticks per call (2 frames each)")
    p.add_argument("--seconds", type=float, default=10.0, help="realtime: seconds of audio per call")
    p.add_argument("--batch-ticks", type=int, default=16, help="max: ticks per transport.write")
    p.add_argument("--sndbuf", type=int, default=0, help="SO_SNDBUF per connection in bytes (0: kernel default)")
    p.add_argument("--connect-concurrency", type=int, default=64, help="connections opened at once")
    p.add_argument("--run-tag", type=int, default=0, help="phase tag: in the callSids and the payload stamps")
    return p


def main() -> int:
    args = build_parser().parse_args()
    if not 1 <= args.calls <= MAX_CALLS:
        raise SystemExit(f"--calls must be within 1..{MAX_CALLS}")
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        while isinstance(exc, ExceptionGroup):  # a failed connection inside the task group
            exc = exc.exceptions[0]
        with contextlib.suppress(BrokenPipeError):
            emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

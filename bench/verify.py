"""The verifying subscriber process: a lean NATS client that checks every audio frame it receives.

Usage: ``python -m bench.verify --nats-url nats://127.0.0.1:N``. It speaks the NATS client
protocol over a raw asyncio connection (``CONNECT``, ``SUB audio.> 1``, ``MSG``/``HMSG``,
``PING``/``PONG``), because nats-py cannot take 100,000 messages per second in Python. Per call and
track (from the stamp in the payload, :mod:`bench.wire`) it counts unique frames and duplicates;
latency is the receive time of the socket read that carried a frame minus the send time in its
stamp. It needs nothing from the gateway but the subject.

Control (JSON lines, :mod:`bench.control`): event ``ready`` once the subscription is confirmed;
command ``reset {tag}`` -> event ``reset`` (from then on only frames stamped with ``tag`` count;
others are ``stale``); command ``drain {expected, quiet, timeout}`` waits until
``expected`` unique frames arrived, or nothing arrived for ``quiet`` seconds, or ``timeout``,
then answers event ``report``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from array import array
from typing import Any
from urllib.parse import urlsplit

from bench.control import BenchError, Commands, emit
from bench.stats import percentile
from bench.wire import FRAME_BYTES, STAMP, STAMP_MAGIC, TAG_MODULO, TRACKS

_SUBJECT = b"audio.>"
_TRACK_SUFFIX = tuple(b"." + t.encode() for t in TRACKS)
_unpack_stamp = STAMP.unpack_from


class Tally:
    """What arrived since the last reset, for one phase tag."""

    def __init__(self, tag: int) -> None:
        self.tag = tag
        self.seen: dict[int, bytearray] = {}
        """(call << 1 | track) -> one byte per sequence number, 1 once received."""
        self.received = 0
        self.unique = 0
        self.duplicates = 0
        self.foreign = 0
        """Messages on ``audio.>`` without our stamp, or not 160 bytes long."""
        self.stale = 0
        """Frames of another phase (late arrivals of an earlier one)."""
        self.misrouted = 0
        """Frames whose subject names another track than their stamp."""
        self.latency_ns = array("q")
        self.first_rx_ns = 0
        self.last_rx_ns = 0

    def record(self, call: int, track: int, seq: int, latency_ns: int, subject_ok: bool) -> None:
        """One frame with our stamp."""
        self.received += 1
        self.latency_ns.append(latency_ns)
        if not subject_ok:
            self.misrouted += 1
        key = call << 1 | track
        marks = self.seen.get(key)
        if marks is None:
            marks = self.seen[key] = bytearray(max(1024, seq + 1))
        elif seq >= len(marks):
            marks.extend(bytes(max(seq + 1, 2 * len(marks)) - len(marks)))
        if marks[seq]:
            self.duplicates += 1
        else:
            marks[seq] = 1
            self.unique += 1

    def report(self) -> dict[str, Any]:
        ordered = sorted(self.latency_ns)
        per_stream = {f"{key >> 1}:{TRACKS[key & 1]}": marks.count(1) for key, marks in self.seen.items()}
        return {
            "received": self.received,
            "unique": self.unique,
            "duplicates": self.duplicates,
            "foreign": self.foreign,
            "stale": self.stale,
            "misrouted": self.misrouted,
            "per_stream": per_stream,
            "latency_ms": {
                "p50": percentile(ordered, 50) / 1e6,
                "p99": percentile(ordered, 99) / 1e6,
                "max": (ordered[-1] if ordered else 0) / 1e6,
                "count": len(ordered),
            },
            "first_rx_ns": self.first_rx_ns,
            "last_rx_ns": self.last_rx_ns,
        }


class NatsVerifier(asyncio.Protocol):
    """The NATS connection; parses whole messages out of each read."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.tally = Tally(-1)
        self.ready: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[str] = loop.create_future()
        self.progress: asyncio.Future[None] | None = None
        """Set (and dropped) by the next read that brings new frames; :meth:`drain` waits on it."""
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._info_seen = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(f"NATS connection lost: {exc or 'closed by the server'}")
        if not self.ready.done():
            self.ready.set_exception(BenchError("NATS connection lost before the subscription was confirmed"))

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buf = self._buf
        buf += data
        tally = self.tally
        before = tally.received
        pos, size = 0, len(buf)
        find, unpack, record, tag = buf.find, _unpack_stamp, tally.record, tally.tag
        while True:
            eol = find(b"\r\n", pos)
            if eol < 0:
                break
            headers = buf.startswith(b"HMSG", pos)
            if headers or buf.startswith(b"MSG ", pos):
                fields = buf[pos + 4 : eol].split()
                total = int(fields[-1])
                body = eol + 2
                end = body + total
                if end + 2 > size:
                    break
                start = body + int(fields[-2]) if headers else body
                pos = end + 2
                if end - start != FRAME_BYTES or buf[start] != STAMP_MAGIC:
                    tally.foreign += 1
                    continue
                _, frame_tag, call, track, seq, sent_ns = unpack(buf, start)
                if frame_tag != tag:
                    tally.stale += 1
                    continue
                track &= 1
                record(call, track, seq, now - sent_ns, fields[0].endswith(_TRACK_SUFFIX[track]))
                continue
            line = bytes(buf[pos:eol])
            pos = eol + 2
            self._control(line)
        del buf[:pos]
        if tally.received != before:
            if not tally.first_rx_ns:
                tally.first_rx_ns = now
            tally.last_rx_ns = now
            if self.progress is not None and not self.progress.done():
                self.progress.set_result(None)

    def _control(self, line: bytes) -> None:
        assert self.transport is not None
        if line.startswith(b"PING"):
            self.transport.write(b"PONG\r\n")
        elif line.startswith(b"PONG"):
            if not self.ready.done():
                self.ready.set_result(None)
        elif line.startswith(b"INFO") and not self._info_seen:
            self._info_seen = True
            connect = {"verbose": False, "pedantic": False, "headers": True, "name": "bench-verify", "lang": "python"}
            self.transport.write(
                b"CONNECT " + json.dumps(connect).encode() + b"\r\nSUB " + _SUBJECT + b" 1\r\nPING\r\n"
            )
        elif line.startswith(b"-ERR"):
            message = line.decode(errors="replace")
            if not self.lost.done():
                self.lost.set_result(f"NATS error: {message}")
            if not self.ready.done():
                self.ready.set_exception(BenchError(message))

    async def drain(self, expected: int, quiet: float, timeout: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        begun = loop.time()
        deadline = begun + timeout
        outcome = "complete"
        while self.tally.unique < expected:
            if self.lost.done():
                raise BenchError(self.lost.result())
            now = loop.time()
            last = max(begun, self.tally.last_rx_ns / 1e9)  # loop.time() is time.monotonic()
            if now >= deadline:
                outcome = "timeout"
                break
            if now - last >= quiet:
                outcome = "quiet"
                break
            wait = min(deadline, last + quiet) - now
            self.progress = loop.create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.progress, wait)
            self.progress = None
        return {"outcome": outcome, **self.tally.report()}


async def main_async(url: str) -> None:
    commands = await Commands.open()
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise BenchError(f"need nats://host:port, got {url!r}")
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_connection(NatsVerifier, parts.hostname, parts.port)
    try:
        await asyncio.wait_for(proto.ready, 10)
        emit("ready")
        while True:
            message = await commands.next()
            cmd = message.get("cmd")
            if cmd == "reset":
                proto.tally = Tally(int(message["tag"]) % TAG_MODULO)
                emit("reset")
            elif cmd == "drain":
                report = await proto.drain(int(message["expected"]), float(message["quiet"]), float(message["timeout"]))
                emit("report", **report)
            elif cmd == "stop":
                return
            else:
                raise BenchError(f"unknown command {message!r}")
    finally:
        transport.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nats-url", required=True)
    args = parser.parse_args()
    try:
        asyncio.run(main_async(args.nats_url))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        with contextlib.suppress(BrokenPipeError):
            emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The control channel between the runner and its helper processes: JSON lines.

A helper (load generator, verifier) reads commands from stdin and writes events to stdout, one
JSON object per line, ``{"cmd": ...}`` one way and ``{"event": ...}`` the other. This module owns
both ends: :func:`emit` and :class:`Commands` for the helper, :class:`Controlled` for the runner.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections import deque
from typing import Any


class BenchError(Exception):
    """A benchmark step failed; the message says which and why (the runner prints it and exits 1)."""


def emit(event: str, **fields: Any) -> None:
    """Helper side: one event line on stdout."""
    sys.stdout.write(json.dumps({"event": event, **fields}, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Commands:
    """Helper side: the commands arriving on stdin; end of input reads as ``{"cmd": "stop"}``."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    @classmethod
    async def open(cls) -> Commands:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=1 << 20)
        mode = os.fstat(sys.stdin.fileno()).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or sys.stdin.isatty():
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        else:  # a file or /dev/null, which epoll cannot watch: its commands are "stop"
            reader.feed_eof()
        return cls(reader)

    async def next(self) -> dict[str, Any]:
        line = await self._reader.readline()
        if not line:
            return {"cmd": "stop"}
        message: dict[str, Any] = json.loads(line)
        return message

    async def expect(self, cmd: str) -> dict[str, Any]:
        """Wait for ``cmd``; ``stop`` (or end of input) instead raises :class:`BenchError`."""
        message = await self.next()
        if message.get("cmd") != cmd:
            raise BenchError(f"expected command {cmd!r}, got {message!r}")
        return message


class Controlled:
    """Runner side: a helper process's stdin and stdout, with its non-JSON output kept for errors."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        if proc.stdin is None or proc.stdout is None:
            raise ValueError("a controlled process needs piped stdin and stdout")
        self.name = name
        self.proc = proc
        self._stdin = proc.stdin
        self._stdout = proc.stdout
        self.chatter: deque[str] = deque(maxlen=20)

    def send(self, cmd: str, **fields: Any) -> None:
        if self._stdin.is_closing():
            raise BenchError(f"{self.name}: its stdin is closed")
        self._stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        """The next event line, which must be ``event``; an ``error`` event or an exit raises."""
        try:
            return await asyncio.wait_for(self._expect(event), timeout)
        except TimeoutError:
            raise BenchError(f"{self.name}: no {event!r} within {timeout:g}s") from None

    async def _expect(self, event: str) -> dict[str, Any]:
        while True:
            line = await self._stdout.readline()
            if not line:
                code = await self.proc.wait()
                tail = "\n  ".join(self.chatter)
                raise BenchError(f"{self.name} exited with code {code} while we waited for {event!r}\n  {tail}")
            text = line.decode(errors="replace").rstrip()
            if not text.startswith("{"):
                self.chatter.append(text)
                continue
            message: dict[str, Any] = json.loads(text)
            got = message.get("event")
            if got == event:
                return message
            if got == "error":
                raise BenchError(f"{self.name}: {message.get('message')}")
            raise BenchError(f"{self.name}: expected event {event!r}, got {message!r}")

    def close_stdin(self) -> None:
        if not self._stdin.is_closing():
            self._stdin.close()

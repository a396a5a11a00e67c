"""Child processes: start them pinned to CPUs, keep their output, stop them for certain.

Every process is started through ``taskset -c CPUS`` (exec-time pinning, so a multi-process
target's workers inherit the mask), optionally through ``nice -n N``, and registered with a
:class:`Processes` group whose ``aclose`` (run from the runner's ``finally``) stops whatever is
still running: SIGTERM, a grace period, then SIGKILL, and the same for any descendants that
outlive their parent. Output that is not a control channel goes to a log file per process, and
the tail of that file goes into error messages. A ``watch``-ed process's output is copied to its
log by a reader task that also answers :meth:`Child.wait_for_line` (readiness is a line a process
prints, never a sleep).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench.control import BenchError, Controlled
from bench.procstat import process_tree, start_time

_LINE_LIMIT = 1 << 24
"""Longest output line read from a child (a verifier report lists every stream)."""
REPO_ROOT = Path(__file__).resolve().parent.parent
"""Children run here, so ``python -m bench.*`` finds this package without an install."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_set(cpus: str) -> set[int]:
    """``"0"``, ``"0,1"`` or ``"0-3"`` (taskset's list syntax) as a set of CPU numbers."""
    out: set[int] = set()
    for part in cpus.split(","):
        first, _, last = part.strip().partition("-")
        out.update(range(int(first), int(last or first) + 1))
    return out


def taskset() -> str:
    found = shutil.which("taskset")
    if found is None:
        raise BenchError("taskset (util-linux) is needed to pin processes to CPUs; install util-linux")
    return found


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)
    _history: deque[str] = field(default_factory=lambda: deque(maxlen=2000), repr=False)
    _waiters: list[tuple[re.Pattern[str], asyncio.Future[re.Match[str]]]] = field(default_factory=list, repr=False)
    _reader: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            with self.log_path.open("rb") as f:
                tail = deque(f, maxlen=lines)
        except OSError:
            return ""
        return "".join(b.decode(errors="replace") for b in tail).rstrip()

    async def wait_for_line(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first output line (already printed or still to come) that matches ``pattern``."""
        regex = re.compile(pattern)
        for line in self._history:
            if m := regex.search(line):
                return m
        if self._reader is None or self._reader.done():
            raise BenchError(f"{self.name} exited before printing /{pattern}/:\n{self.log_tail()}")
        future: asyncio.Future[re.Match[str]] = asyncio.get_running_loop().create_future()
        self._waiters.append((regex, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BenchError(f"{self.name} did not print /{pattern}/ within {timeout:g}s:\n{self.log_tail()}") from None
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not future]

    async def _copy_output(self, stream: asyncio.StreamReader) -> None:
        try:
            while line := await stream.readline():
                if self._log is not None:
                    self._log.write(line)
                    self._log.flush()
                text = line.decode(errors="replace")
                self._history.append(text)
                for regex, future in self._waiters:
                    if not future.done() and (m := regex.search(text)):
                        future.set_result(m)
        finally:
            for _, future in self._waiters:
                if not future.done():
                    future.set_exception(BenchError(f"{self.name} exited:\n{self.log_tail()}"))


async def _stop_orphans(offspring: dict[int, int | None], grace: float) -> None:
    """SIGTERM, then SIGKILL, to the processes of ``offspring`` (pid -> start time) still alive.
    They are not our children, so there is nothing to wait on: their exit is polled, bounded."""

    def alive() -> list[int]:
        return [p for p, started in offspring.items() if started is not None and start_time(p) == started]

    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = alive()
        for p in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, sig)
        for _ in range(int(grace / 0.05)):
            if not left or not (left := alive()):
                return
            await asyncio.sleep(0.05)


class Processes:
    """The processes a run started; :meth:`aclose` stops every one of them (newest first)."""

    def __init__(self, log_dir: Path, nice: int = 0) -> None:
        self.log_dir = log_dir
        self._nice = ["nice", "-n", str(nice)] if nice else []
        """Every process runs at this niceness (negative: ahead of whatever else the machine runs)."""
        self._children: list[Child] = []
        self._serial = 0

    async def start(
        self, name: str, argv: list[str], cpus: str, *, control: bool = False, watch: bool = False
    ) -> Child:
        """Start ``argv`` pinned to ``cpus``. ``control``: stdin and stdout are pipes (see
        :meth:`controlled`) and stderr goes to the log; ``watch``: stdout and stderr are read
        into the log by a task (see :meth:`Child.wait_for_line`); else both go to the log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._serial += 1
        log_path = self.log_dir / f"{self._serial:03d}-{name}.log"
        log = log_path.open("wb")
        try:
            proc = await asyncio.create_subprocess_exec(
                taskset(),
                "-c",
                cpus,
                *self._nice,
                *argv,
                stdin=asyncio.subprocess.PIPE if control else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if control or watch else log,
                stderr=asyncio.subprocess.STDOUT if watch else log,
                limit=_LINE_LIMIT,
                cwd=REPO_ROOT,
            )
        except BaseException:
            log.close()
            raise
        child = Child(name, proc, log_path, log)
        self._children.append(child)
        if watch:
            assert proc.stdout is not None
            child._reader = asyncio.create_task(child._copy_output(proc.stdout))
        return child

    @staticmethod
    def controlled(child: Child) -> Controlled:
        return Controlled(child.name, child.proc)

    async def stop(self, child: Child, grace: float = 10.0) -> int:
        """Stop one child (SIGTERM, then SIGKILL after ``grace`` seconds) and whatever it started
        (workers) that outlives it; its exit code."""
        proc = child.proc
        offspring = {p: start_time(p) for p in process_tree(proc.pid)[1:]} if proc.returncode is None else {}
        try:
            if proc.returncode is None:
                if proc.stdin is not None and not proc.stdin.is_closing():
                    proc.stdin.close()
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), grace)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            await _stop_orphans(offspring, grace)
        finally:
            if child._reader is not None:
                with contextlib.suppress(TimeoutError, BenchError):
                    await asyncio.wait_for(child._reader, 5.0)
                child._reader.cancel()
            if child._log is not None:
                child._log.close()
                child._log = None
            if child in self._children:
                self._children.remove(child)
        return proc.returncode if proc.returncode is not None else -1

    async def finish(self, child: Child, timeout: float) -> int:
        """Wait for a child that was told to exit; stop it if it does not within ``timeout``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(child.proc.wait(), timeout)
        return await self.stop(child)

    async def aclose(self) -> None:
        for child in reversed(list(self._children)):
            await self.stop(child, grace=5.0)

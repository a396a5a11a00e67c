"""CPU time and memory of the process under test, and the load of each CPU, from ``/proc``.

A target may be several processes (``--workers``), so every figure covers the process and all its
live descendants: CPU is ``utime + stime + cutime + cstime`` of each (``cutime``/``cstime`` hold
reaped children), RSS the sum of ``VmRSS``. Per-CPU busy and stolen time come from ``/proc/stat``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may hold spaces: split after the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks after boot), which with the pid names one process for
    good; None once it has exited (zombies included)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None and fields[0] not in ("Z", "X") else None


def cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid`` and its descendants (reaped ones included)."""
    total = 0
    for p in process_tree(pid):
        fields = _stat_fields(p)
        if fields is not None:
            # After the state field: utime, stime, cutime, cstime are fields 14..17 of stat(5).
            total += sum(int(v) for v in fields[11:15])
    return total / _TICK


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            status = (_PROC / str(p) / "status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
                break
    return total


@dataclass(frozen=True)
class CoreTicks:
    """Jiffies of one CPU since boot: busy (user, nice, system, irq, softirq), stolen by the
    hypervisor, and all of them (idle and iowait included)."""

    busy: int
    steal: int
    total: int


def core_ticks() -> dict[int, CoreTicks]:
    out: dict[int, CoreTicks] = {}
    for line in (_PROC / "stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *values = line.split()
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in values[:8])
            busy = user + nice + system + irq + softirq
            out[int(name[3:])] = CoreTicks(busy, steal, busy + steal + idle + iowait)
    return out


@dataclass(frozen=True)
class Sample:
    """One reading: wall clock, CPU seconds of the target and of named helper processes, and
    every CPU's jiffies."""

    wall: float
    cpu: float
    helpers: dict[str, float]
    cores: dict[int, CoreTicks]

    @classmethod
    def take(cls, pid: int, helpers: Mapping[str, int] | None = None) -> Sample:
        return cls(
            time.monotonic(),
            cpu_seconds(pid),
            {name: cpu_seconds(p) for name, p in (helpers or {}).items()},
            core_ticks(),
        )


@dataclass(frozen=True)
class Usage:
    """What happened between two samples."""

    wall: float
    cpu: float
    """Target CPU seconds."""
    helpers_pct: dict[str, float]
    """Each helper's CPU, as a percentage of one CPU over the interval."""
    core_busy: dict[int, float]
    """Busy percentage of each CPU, whoever used it."""
    core_steal: dict[int, float]
    """Percentage of each CPU's time the hypervisor gave to someone else (virtual machines)."""

    @property
    def cpu_percent(self) -> float:
        return 100 * self.cpu / self.wall if self.wall > 0 else 0.0


def usage(before: Sample, after: Sample) -> Usage:
    wall = after.wall - before.wall
    busy: dict[int, float] = {}
    steal: dict[int, float] = {}
    for cpu, t1 in after.cores.items():
        t0 = before.cores.get(cpu, t1)
        span = t1.total - t0.total
        busy[cpu] = 100 * (t1.busy - t0.busy) / span if span > 0 else 0.0
        steal[cpu] = 100 * (t1.steal - t0.steal) / span if span > 0 else 0.0
    helpers = {
        name: 100 * (after.helpers[name] - before.helpers.get(name, 0.0)) / wall if wall > 0 else 0.0
        for name in after.helpers
    }
    return Usage(wall, after.cpu - before.cpu, helpers, busy, steal)

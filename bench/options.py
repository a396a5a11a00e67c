"""The runner's command line and the settings it resolves to (``--smoke`` presets included)."""

from __future__ import annotations

import argparse
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from bench.targets import TARGETS

DEFAULT_TARGETS = ("gateway", "naive")

DEFAULT_OUT = Path(__file__).resolve().parent / "out"


@dataclass(frozen=True)
class Options:
    targets: tuple[str, ...]
    calls: tuple[int, ...]
    seconds: float
    repeats: int
    max_calls: int
    max_ticks: int
    idle_streams: int
    scaling: bool
    gateway_cmd: tuple[str, ...] | None
    gateway_args: tuple[str, ...]
    target_cpus: str
    load_cpus: str
    png: Path
    json: Path
    log_dir: Path
    start_timeout: float
    phase_timeout: float
    quiet: float
    batch_ticks: int
    sndbuf: int
    nice: int
    smoke: bool
    transform: int | None
    durable: bool
    layers: bool


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("call counts must be positive")
    return values


def _targets(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    unknown = [n for n in names if n not in TARGETS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"targets are a comma-separated list of {', '.join(TARGETS)}: {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the gateway against a naive reference bridge under identical load (one run).",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="about 10 s in all: small counts, 1 repeat, short phases (delivery still checked)",
    )
    p.add_argument(
        "--only",
        type=_targets,
        metavar="TARGETS",
        help=f"measure only these targets, comma-separated, in this order ({', '.join(TARGETS)})",
    )
    p.add_argument("--calls", type=_int_list, help="real-time call counts (default 100,300,600; smoke 20)")
    p.add_argument("--seconds", type=float, help="seconds per real-time phase (default 10; smoke 1.5)")
    p.add_argument("--repeats", type=int, help="repeats of every measurement; medians are reported (default 3)")
    p.add_argument("--max-calls", type=int, help="calls in the maximum-rate phase (default 20; smoke 10)")
    p.add_argument("--max-ticks", type=int, help="20 ms ticks per call at maximum rate, 2 frames each (default 5000)")
    p.add_argument("--idle-streams", type=int, help="streams held open for the RSS figure (default 1000; smoke 100)")
    p.add_argument("--no-scaling", action="store_true", help="skip the --workers scaling measurement")
    p.add_argument(
        "--lean",
        action="store_true",
        help="also measure the lean reference (bench/lean_bridge.py: picows, msgspec, its own NATS writer, "
        "none of the gateway's features), the floor of this design on this machine",
    )
    p.add_argument(
        "--durable",
        action="store_true",
        help="also measure the gateway with a JetStream route (first call count, max rate) next to core NATS",
    )
    p.add_argument(
        "--transform",
        type=int,
        choices=(8000, 16000, 24000, 48000),
        metavar="RATE",
        help="also measure the gateway with a route that publishes an L16/RATE copy of every frame "
        "(first call count, max rate) next to the plain route",
    )
    p.add_argument(
        "--layers",
        action="store_true",
        help="also run the first real-time call count through the gateway cut short after each layer of its "
        "per-frame path (read, decode, session, outbox) and print what each layer costs (bench/cut.py)",
    )
    p.add_argument("--gateway-cmd", help="the gateway command before its flags (default: streamgw serve)")
    p.add_argument("--gateway-args", default="", help='extra gateway flags, e.g. "--log-level WARNING"')
    p.add_argument("--target-cpus", help="CPU list for the process under test (default: first allowed CPU)")
    p.add_argument("--load-cpus", help="CPU list for load generator, verifier, nats-server (default: second CPU)")
    p.add_argument("--png", type=Path, help=f"chart path; the JSON goes next to it (default {DEFAULT_OUT}/bench.png)")
    p.add_argument("--start-timeout", type=float, default=60.0, help="seconds a process may take to be ready")
    p.add_argument("--phase-timeout", type=float, default=300.0, help="seconds a phase may take beyond its length")
    p.add_argument("--quiet", type=float, help="seconds without frames after which missing ones count as lost")
    p.add_argument("--batch-ticks", type=int, default=16, help="ticks per write at maximum rate")
    p.add_argument("--sndbuf", type=int, default=0, help="load generator SO_SNDBUF in bytes (0: kernel default)")
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of every benchmark process (e.g. -5, as root, on a machine others use too)",
    )
    return p


def _default_cpus() -> tuple[str, str]:
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise SystemExit(f"need two CPUs (target on one, load on the other); this process may use {allowed}")
    return str(allowed[0]), str(allowed[1])


def parse(argv: list[str] | None = None) -> Options:
    a = build_parser().parse_args(argv)
    smoke = bool(a.smoke)
    target_default, load_default = _default_cpus()
    png: Path = a.png or DEFAULT_OUT / "bench.png"
    repeats = a.repeats or (1 if smoke else 3)
    if repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    return Options(
        targets=a.only or (*DEFAULT_TARGETS, *(("lean",) if a.lean else ())),
        calls=a.calls or ((20,) if smoke else (100, 300, 600)),
        seconds=a.seconds or (1.5 if smoke else 10.0),
        repeats=repeats,
        max_calls=a.max_calls or (10 if smoke else 20),
        max_ticks=a.max_ticks or (250 if smoke else 5000),
        idle_streams=a.idle_streams or (100 if smoke else 1000),
        scaling=not a.no_scaling,
        gateway_cmd=tuple(shlex.split(a.gateway_cmd)) if a.gateway_cmd else None,
        gateway_args=tuple(shlex.split(a.gateway_args)),
        target_cpus=a.target_cpus or target_default,
        load_cpus=a.load_cpus or load_default,
        png=png,
        json=png.with_suffix(".json"),
        log_dir=png.parent / "logs",
        start_timeout=a.start_timeout,
        phase_timeout=a.phase_timeout,
        quiet=a.quiet or (1.0 if smoke else 2.0),
        batch_ticks=a.batch_ticks,
        sndbuf=a.sndbuf,
        nice=a.nice,
        smoke=smoke,
        transform=a.transform,
        durable=bool(a.durable),
        layers=bool(a.layers),
    )

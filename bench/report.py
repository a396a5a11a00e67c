"""From raw repeats to what people read: medians and spreads, the table, the JSON.

The summary keeps, per figure, the median over repeats, the spread ((max - min) / median) and the
values themselves. The table prints absolute figures for each target and the gateway's ratio to
each reference bridge measured (gateway/naive, and gateway/lean with ``--lean``); below it,
delivery (exactly once or not, per phase) and interference (other load on the target's core and
the load of the other core while measuring).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bench.layers import LAYERS, cpu_by_layer
from bench.stats import median, spread

Figure = dict[str, Any]
_HELPERS = ("loadgen", "verify", "nats-server")


def figure(values: Iterable[float]) -> Figure:
    vals = [float(v) for v in values]
    return {"median": median(vals), "spread": spread(vals), "values": vals}


def _phases(runs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = [(f"{c} calls", p) for c, reps in runs["realtime"].items() for p in reps]
    return out + [("max rate", p) for p in runs["max"]]


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name, runs in result["runs"].items():
        mx = runs["max"]
        phases = _phases(runs)
        summary[name] = {
            "max_offered_per_cpu_s": figure(p["offered_per_cpu_s"] for p in mx),
            "max_delivered_per_cpu_s": figure(p["delivered_per_cpu_s"] for p in mx),
            "max_delivered_fraction": figure(p["delivered"] / p["offered"] for p in mx),
            "max_delivered_per_s": figure(p["delivered_per_s"] for p in mx),
            "max_latency_p99_ms": figure(p["latency_ms"]["p99"] for p in mx),
            "loadgen_frames_per_cpu_s": figure(p["loadgen_frames_per_cpu_s"] for p in mx),
            "verify_frames_per_cpu_s": figure(p["verify_frames_per_cpu_s"] for p in mx),
            "realtime": {
                calls: {
                    "cpu_pct": figure(p["cpu_pct"] for p in reps),
                    "p50_ms": figure(p["latency_ms"]["p50"] for p in reps),
                    "p99_ms": figure(p["latency_ms"]["p99"] for p in reps),
                    "send_lateness_p99_ms": figure(p["send_lateness_ms"]["p99"] for p in reps),
                    "backlog_s": figure(p["backlog_s"] for p in reps),
                }
                for calls, reps in runs["realtime"].items()
            },
            "rss_per_1000_idle_mib": figure(p["rss_per_1000_mib"] for p in runs["idle"]),
            "exactly_once": {
                "all": all(p["exactly_once"] for _, p in phases),
                "failed": [
                    {"phase": label, "missing": p["missing"], "duplicates": p["duplicates"], "offered": p["offered"]}
                    for label, p in phases
                    if not p["exactly_once"]
                ],
            },
            "interference": {
                key: figure(p[key] for _, p in phases)
                for key in (
                    "target_core_other_pct",
                    "target_core_steal_pct",
                    "load_core_busy_pct",
                    "load_core_other_pct",
                    "load_core_steal_pct",
                )
            }
            | {
                f"load_side_{name}_pct": figure(p["load_side_pct"].get(name, math.nan) for _, p in phases)
                for name in _HELPERS
            },
        }
    if result.get("layers"):
        steps = [cpu_by_layer(run["cuts"], run["whole"]) for run in result["layers"]]
        summary["layers"] = {layer: figure(step[layer] for step in steps) for layer in LAYERS}
        summary["layers"]["calls"] = result["layers"][0]["whole"]["calls"]
    scaling = result["scaling"]
    if scaling.get("status") == "measured":
        one = figure(p["delivered_per_s"] for p in scaling["workers"]["1"])
        two = figure(p["delivered_per_s"] for p in scaling["workers"]["2"])
        summary["scaling"] = {
            "frames_per_s_1_worker": one,
            "frames_per_s_2_workers": two,
            "speedup": two["median"] / one["median"] if one["median"] else math.nan,
        }
    return summary


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


Pick = Callable[[dict[str, Any]], Figure]


def _key(*path: str, scale: float = 1.0) -> Pick:
    def pick(summary: dict[str, Any]) -> Figure:
        node: Any = summary
        for part in path:
            node = node[part]
        fig: Figure = node
        return {**fig, "median": fig["median"] * scale}

    return pick


def _rows(calls: list[str]) -> list[tuple[str, Pick, str, bool]]:
    """(label, figure, format, whether a gateway/reference ratio means anything)."""
    rows: list[tuple[str, Pick, str, bool]] = [
        ("max rate: frames/CPU-s, offered", _key("max_offered_per_cpu_s"), ",.0f", True),
        ("max rate: frames/CPU-s, delivered only", _key("max_delivered_per_cpu_s"), ",.0f", True),
        ("max rate: delivered / offered (%)", _key("max_delivered_fraction", scale=100), ".2f", True),
        ("max rate: delivered frames/s (wall)", _key("max_delivered_per_s"), ",.0f", True),
    ]
    for c in calls:
        rows += [
            (f"{c} calls: CPU % of one core", _key("realtime", c, "cpu_pct"), ".1f", True),
            (f"{c} calls: latency p50 (ms)", _key("realtime", c, "p50_ms"), ".2f", True),
            (f"{c} calls: latency p99 (ms)", _key("realtime", c, "p99_ms"), ".2f", True),
            (f"{c} calls: backlog at the end (s)", _key("realtime", c, "backlog_s"), ".2f", False),
            (f"{c} calls: load gen. lateness p99 (ms)", _key("realtime", c, "send_lateness_p99_ms"), ".1f", False),
        ]
    rows.append(("RSS per 1000 idle streams (MiB)", _key("rss_per_1000_idle_mib"), ".1f", True))
    return rows


def table(result: dict[str, Any], summary: dict[str, Any]) -> str:
    names = list(result["runs"])
    calls = [str(c) for c in result["meta"]["calls"]]
    references = [n for n in names if n != "gateway"] if "gateway" in names else []
    head = f"{'figure (median of ' + str(result['meta']['repeats']) + ')':<40}"
    for n in names:
        head += f"{n:>14}{'spread':>8}"
    for ref in references:
        head += f"{'gateway/' + ref:>16}"
    lines = [head, "-" * len(head)]
    for label, pick, spec, ratio_means in _rows(calls):
        line = f"{label:<40}"
        medians = {}
        for n in names:
            fig = pick(summary[n])
            medians[n] = fig["median"]
            spread_pct = "n/a" if math.isnan(fig["spread"]) else f"{100 * fig['spread']:.0f}%"
            line += f"{_fmt(fig['median'], spec):>14}{spread_pct:>8}"
        for ref in references if ratio_means else ():
            ratio = medians["gateway"] / medians[ref] if medians[ref] else math.nan
            line += f"{_fmt(ratio, '.2f'):>16}"
        lines.append(line)
    lines.append("")
    for n in names:
        once = summary[n]["exactly_once"]
        if once["all"]:
            lines.append(f"delivery, {n}: every offered frame delivered exactly once in every phase")
        for f in once["failed"]:
            lines.append(
                f"delivery, {n}: NOT exactly once at {f['phase']}: {f['missing']} of {f['offered']} missing, "
                f"{f['duplicates']} duplicates"
            )
    for n in names:
        inter = summary[n]["interference"]

        def med_max(key: str, inter: dict[str, Figure] = inter) -> str:
            fig = inter[key]
            return f"{_fmt(fig['median'], '.0f')}% (max {_fmt(max(fig['values'], default=math.nan), '.0f')}%)"

        side = ", ".join(f"{h} {_fmt(inter[f'load_side_{h}_pct']['median'], '.0f')}%" for h in _HELPERS)
        lines.append(
            f"interference, {n} (median over phases): target CPU: others {med_max('target_core_other_pct')}, "
            f"stolen {med_max('target_core_steal_pct')}; load CPU: busy {med_max('load_core_busy_pct')} = {side}, "
            f"others {med_max('load_core_other_pct')}, stolen {med_max('load_core_steal_pct')}"
        )
    for n in names:
        lines.append(
            f"load side, {n} at max rate: the load generator offers "
            f"{_fmt(summary[n]['loadgen_frames_per_cpu_s']['median'], ',.0f')} frames per CPU-second of its own, "
            f"the verifier checks {_fmt(summary[n]['verify_frames_per_cpu_s']['median'], ',.0f')}"
        )
    if "layers" in summary:
        by_layer = summary["layers"]
        steps = ", ".join(f"{layer} {_fmt(by_layer[layer]['median'], '+.1f')}" for layer in LAYERS[1:])
        lines.append(
            f"layers, gateway at {by_layer['calls']} calls (CPU % of one core, median of each step): "
            f"read {_fmt(by_layer['read']['median'], '.1f')}, then {steps}"
        )
    scaling = result["scaling"]
    if scaling.get("status") == "measured":
        sc = summary["scaling"]
        lines.append(
            f"scaling, gateway: {_fmt(sc['frames_per_s_1_worker']['median'], ',.0f')} frames/s with 1 worker, "
            f"{_fmt(sc['frames_per_s_2_workers']['median'], ',.0f')} with 2: x{_fmt(sc['speedup'], '.2f')} "
            f"(CAVEAT: {scaling['note']})"
        )
    else:
        lines.append(f"scaling: skipped ({scaling.get('note')})")
    lines.append(
        f"load average {result['meta']['loadavg_start'][0]:.2f} at start, {result['meta']['loadavg_end'][0]:.2f} "
        "at end; spread = (max - min) / median over the repeats"
    )
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """NaN (no value) becomes null, so the file is strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_json(path: Path, result: dict[str, Any], summary: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain({**result, "summary": summary}), indent=2, allow_nan=False) + "\n")

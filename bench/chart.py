"""The PNG: four panels (max-rate efficiency, CPU and latency against call count, idle RSS)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

_COLOURS = {"gateway": "#1f77b4", "naive": "#ff7f0e", "lean": "#2ca02c"}


def _bar_panel(ax: Any, names: list[str], figs: list[dict[str, Any]], title: str, ylabel: str) -> None:
    medians = [f["median"] for f in figs]
    lows = [m - min(f["values"], default=m) for m, f in zip(medians, figs, strict=True)]
    highs = [max(f["values"], default=m) - m for m, f in zip(medians, figs, strict=True)]
    ax.bar(names, medians, yerr=[lows, highs], capsize=4, color=[_COLOURS.get(n, "grey") for n in names])
    for i, m in enumerate(medians):
        if not math.isnan(m):
            ax.annotate(f"{m:,.0f}" if m >= 100 else f"{m:.1f}", (i, m), ha="center", va="bottom", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)


def write_chart(path: Path, result: dict[str, Any], summary: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["runs"])
    calls = [str(c) for c in result["meta"]["calls"]]
    xs = [int(c) for c in calls]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    _bar_panel(
        axes[0][0],
        names,
        [summary[n]["max_delivered_per_cpu_s"] for n in names],
        "max rate: delivered frames per CPU-second",
        "frames / CPU-s",
    )
    for n in names:
        rt = summary[n]["realtime"]
        colour = _COLOURS.get(n, "grey")
        axes[0][1].plot(xs, [rt[c]["cpu_pct"]["median"] for c in calls], "o-", color=colour, label=n)
        axes[1][0].plot(xs, [rt[c]["p99_ms"]["median"] for c in calls], "o-", color=colour, label=f"{n} p99")
        axes[1][0].plot(xs, [rt[c]["p50_ms"]["median"] for c in calls], "o--", color=colour, label=f"{n} p50")
    axes[0][1].set_title("real time: CPU of the target's core", fontsize=10)
    axes[0][1].set_xlabel("two-track calls")
    axes[0][1].set_ylabel("% of one core")
    axes[0][1].legend()
    axes[1][0].set_title("real time: WebSocket send to NATS receive latency", fontsize=10)
    axes[1][0].set_xlabel("two-track calls")
    axes[1][0].set_ylabel("ms (log)")
    axes[1][0].set_yscale("log")
    axes[1][0].legend(fontsize=8)
    _bar_panel(
        axes[1][1], names, [summary[n]["rss_per_1000_idle_mib"] for n in names], "RSS per 1000 idle streams", "MiB"
    )
    meta = result["meta"]
    kind = "SMOKE (figures meaningless) " if meta["smoke"] else ""
    fig.suptitle(
        f"{kind}stream-gateway benchmark {meta['started']} (commit {meta['git_commit']}), "
        f"median of {meta['repeats']}, target on CPU {meta['target_cpus']}",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)

"""``python -m bench`` (``make bench``): run the benchmark, print the table, write JSON and PNG.

SIGTERM and Ctrl-C cancel the run; its ``finally`` still stops every process it started.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

from bench.chart import write_chart
from bench.control import BenchError
from bench.options import Options, parse
from bench.report import summarize, table, write_json
from bench.runner import run


async def _run_cancellable(opts: Options) -> dict[str, Any]:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(opts)


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    print(
        f"benchmark: targets {', '.join(opts.targets)}; target on CPU {opts.target_cpus}, load generator, "
        f"verifier and nats-server on CPU {opts.load_cpus}; {opts.repeats} repeat(s)"
        + (" (smoke: figures meaningless)" if opts.smoke else ""),
        flush=True,
    )
    try:
        result = asyncio.run(_run_cancellable(opts))
    except BenchError as exc:  # before any measurement (nats-server, verifier)
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("benchmark interrupted; every process it started was stopped", file=sys.stderr)
        return 130
    summary = summarize(result)
    if any(runs["idle"] for runs in result["runs"].values()):
        print()
        print(table(result, summary))
        write_chart(opts.png, result, summary)
    write_json(opts.json, result, summary)
    print(f"\nwrote {opts.json}" + (f" and {opts.png}" if opts.png.exists() else ""))
    if result["error"]:
        print(f"benchmark failed (the figures above are partial): {result['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

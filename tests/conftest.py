"""Root fixtures: a real nats-server per test on a free loopback port.

Also the run's last line: a suite that silently shrinks is worse than a failing one, so every run
ends with one plain line naming what was skipped and why (the reason says how to get it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import pytest

from gateway.embedded_nats import EmbeddedNats

pytest_plugins = ["tests.k8s.fixtures"]


@pytest.fixture
async def nats_server() -> AsyncIterator[EmbeddedNats]:
    """A fresh nats-server with JetStream, on 127.0.0.1 and a port it picked itself."""
    async with EmbeddedNats() as server:
        yield server


_SKIPPED = pytest.StashKey[str]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if reasons:
        parts = [f"{count} because {reason}" for reason, count in reasons.most_common()]
        line = f"skipped {sum(reasons.values())} tests: " + "; ".join(parts)
    else:
        line = "skipped: none"
    terminalreporter.config.stash[_SKIPPED] = line


def pytest_unconfigure(config: pytest.Config) -> None:
    # After pytest's own "N passed" line, so it is the last line of `make test`.
    line = config.stash.get(_SKIPPED, None)
    if line is not None:
        print(line)

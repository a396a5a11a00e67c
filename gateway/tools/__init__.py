"""Operator and test tools that sit outside the gateway's request path.

``simulate`` plays a telephony provider (any of the eight: :mod:`gateway.tools.providers`)
against the stream endpoint; ``tap`` is a NATS consumer that shows and records what the gateway
published; ``replay`` reads a finished call back from a durable route's JetStream stream. Each
module exposes a library entry point for tests and a ``register(subparsers)`` for the ``streamgw``
command line; :func:`register_all` adds them.
Nothing in the gateway imports this package.
"""

from __future__ import annotations

import argparse


def register_all(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate``, ``tap`` and ``replay`` sub-commands (imported lazily: they pull in aiohttp/nats)."""
    from gateway.tools import replay, simulate, tap

    simulate.register(subparsers)
    tap.register(subparsers)
    replay.register(subparsers)

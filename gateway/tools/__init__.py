"""Operator and test tools that sit outside the gateway's request path.

``simulate`` plays the provider (SignalWire/Twilio) against the stream endpoint; ``tap`` is a
NATS consumer that shows and records what the gateway published. Each module exposes a library
entry point for tests and a ``register(subparsers)`` for the ``streamgw`` command line;
:func:`register_all` adds both. Nothing in the gateway imports this package.
"""

from __future__ import annotations

import argparse


def register_all(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``simulate`` and ``tap`` sub-commands (imported lazily: they pull in aiohttp/nats)."""
    from gateway.tools import simulate, tap

    simulate.register(subparsers)
    tap.register(subparsers)

"""The command line both reference bridges take: ``--port P --nats-url URL [--host H]``."""

from __future__ import annotations

import argparse


def parser(prog: str, doc: str) -> argparse.ArgumentParser:
    """A parser for ``python -m PROG``, described by the first paragraph of ``doc``."""
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc.split("\n\n", maxsplit=1)[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--nats-url", required=True)
    return p

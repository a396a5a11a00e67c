"""``python -m gateway.tools simulate|tap|replay ...``: the tools without the ``streamgw`` entry point.

Useful where the package is importable but not installed (a checkout, a container without the
console script). The sub-commands and flags are exactly those of ``streamgw simulate|tap|replay``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.tools import register_all


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.tools")
    register_all(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())

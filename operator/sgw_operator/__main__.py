"""``streamgw-operator`` / ``python -m sgw_operator``: run the StreamRoute operator.

Loads the settings from ``SGW_OPERATOR_*`` once (a bad value exits with code 2 and names the
variable), configures kopf's logging, then runs kopf standalone (one replica, no peering) with
the handlers of :mod:`sgw_operator.handlers`, on the configured namespaces or all of them, with
kopf's liveness endpoint on ``SGW_OPERATOR_HEALTH_PORT`` (or ``--liveness URL``) and Prometheus
metrics on ``SGW_OPERATOR_METRICS_PORT``. :func:`kopf_cli_args` gives the same run for
``KopfRunner``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final

from sgw_operator.errors import ConfigError
from sgw_operator.settings import OperatorSettings, known_variables, load_settings

INSTALL_HINT: Final = (
    "streamgw-operator: kopf is not installed; install the operator extra: pip install 'stream-gateway[operator]'"
)


def kopf_cli_args(settings: OperatorSettings) -> list[str]:
    """The ``kopf run`` arguments equivalent to :func:`main` (used with ``KopfRunner`` in tests)."""
    scope = [arg for ns in settings.namespaces for arg in ("-n", ns)] or ["-A"]
    return ["run", "--standalone", *scope]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamgw-operator",
        allow_abbrev=False,  # a misspelt flag must fail, not match a prefix
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="settings (environment):\n  " + "\n  ".join(known_variables()),
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="kopf's liveness endpoint, e.g. http://0.0.0.0:8081/healthz "
        "(default: from SGW_OPERATOR_LISTEN_HOST and SGW_OPERATOR_HEALTH_PORT)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (2): argparse already said why
        return int(exc.code or 0)
    try:
        # kopf is the operator extra, not a gateway dependency: without it, say how to get it
        # (one line, exit 2) instead of a ModuleNotFoundError traceback.
        import kopf
        import prometheus_client

        from sgw_operator.handlers import build_registry
    except ModuleNotFoundError as exc:
        if exc.name != "kopf":
            raise
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"sgw-operator: invalid setting {exc}", file=sys.stderr)
        return 2
    kopf.configure(
        debug=settings.log_level == "debug",
        verbose=settings.log_level == "info",
        quiet=settings.log_level == "warning",
        log_format=kopf.LogFormat[settings.log_format.upper()],
    )
    kopf.run(
        registry=build_registry(settings=settings, metrics_registry=prometheus_client.REGISTRY),
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=args.liveness or f"http://{settings.listen_host}:{settings.health_port}/healthz",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``streamgw``: the command line. The only place that turns errors into exit codes.

Sub-commands: ``serve`` (the gateway), ``simulate`` (act as any supported provider), ``tap``
(watch what arrives on NATS), ``replay`` (a call back from a durable route's stream),
``check-config`` and ``print-env-defaults``. Every ``serve`` flag has an ``SGW_`` environment twin;
a flag wins over its variable. ``serve`` with more than one worker runs the supervisor
(:mod:`gateway.supervisor`) instead of the gateway itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.observability.logging import configure_logging, redact_url
from gateway.settings import Settings, env_defaults, load_settings

EXIT_CONFIG = 2


def _serve_overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "server.port": args.port,
        "server.internal_port": args.internal_port,
        "server.host": args.host,
        "server.workers": args.workers,
        "nats.url": args.nats_url,
        "routing.file": args.routes,
        "routing.secrets_dir": args.secrets_dir,
        "routing.source": args.route_source,
        "server.tls_cert_file": args.tls_cert,
        "server.tls_key_file": args.tls_key,
        "observability.log_level": args.log_level,
        "observability.log_format": args.log_format,
    }


def _add_serve_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, help="public WebSocket port (SGW_SERVER__PORT, default 8080)")
    p.add_argument(
        "--internal-port",
        type=int,
        help="metrics/probes port (SGW_SERVER__INTERNAL_PORT, default 9090)",
    )
    p.add_argument("--host", help="listen address (SGW_SERVER__HOST)")
    p.add_argument(
        "--workers",
        type=int,
        help="gateway processes sharing the public port; 0: one per CPU (SGW_SERVER__WORKERS, default 1)",
    )
    p.add_argument("--nats-url", help="NATS URL; absent: embedded nats-server (SGW_NATS__URL)")
    p.add_argument("--routes", type=Path, help="StreamRoute YAML file (SGW_ROUTING__FILE)")
    p.add_argument(
        "--secrets-dir",
        type=Path,
        help="Secret mount dir for bearer tokens (SGW_ROUTING__SECRETS_DIR)",
    )
    p.add_argument("--route-source", choices=["auto", "static", "file", "natskv"], help="SGW_ROUTING__SOURCE")
    p.add_argument("--tls-cert", type=Path, help="serve wss: certificate chain (SGW_SERVER__TLS_CERT_FILE)")
    p.add_argument("--tls-key", type=Path, help="serve wss: private key (SGW_SERVER__TLS_KEY_FILE)")
    p.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="SGW_OBSERVABILITY__LOG_LEVEL",
    )
    p.add_argument("--log-format", choices=["text", "json"], help="SGW_OBSERVABILITY__LOG_FORMAT")


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = load_settings(overrides=_serve_overrides(args))
    configure_logging(settings.observability.log_level, settings.observability.log_format)
    if settings.server.workers != 1:
        from gateway.supervisor import WorkerStartError, resolve_workers, supervise

        workers = resolve_workers(settings.server.workers)
        if workers > 1:
            try:
                return asyncio.run(supervise(settings, workers))
            except WorkerStartError as exc:
                print(f"streamgw: {exc}", file=sys.stderr)
                return exc.exit_code
    from gateway.server import serve

    return run_loop(serve(settings))


def run_loop(main: Coroutine[Any, Any, int]) -> int:
    """uvloop where it exists: its event loop costs less per socket event than asyncio's own."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships for every platform we deploy on
        return asyncio.run(main)
    return uvloop.run(main)


def _cmd_check_config(args: argparse.Namespace) -> int:
    settings: Settings = load_settings(overrides=_serve_overrides(args))
    if settings.routing_source == "file":
        from gateway.routing.file import describe, load_routes_file

        assert settings.routing.file is not None
        table = load_routes_file(
            settings.routing.file,
            settings.routing.secrets_dir,
            default=settings.default_route_enabled,
            version=1,
        )
        for row in describe(table):
            print(
                f"route {row['name']}: controlId={row['controlId']} priority={row['priority']} "
                f"subject={row['subject']} auth={row['auth']}"
            )
    from gateway.transport.status_auth import StatusAuth

    print(StatusAuth.from_settings(settings).describe()[1])  # reads the status credential files
    print(f"configuration OK (routes: {settings.routing_source}, NATS: {redact_url(settings.nats.url) or 'embedded'})")
    return 0


def _cmd_print_env(args: argparse.Namespace) -> int:
    for name, default, doc in env_defaults():
        if doc:
            print(f"# {doc}")
        print(f"{name}={default}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamgw", description="stream-gateway: provider media streams to NATS")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    _add_serve_flags(serve)
    serve.set_defaults(func=_cmd_serve)
    check = sub.add_parser("check-config", help="validate settings (and the routes file) and exit")
    _add_serve_flags(check)
    check.set_defaults(func=_cmd_check_config)
    env = sub.add_parser("print-env-defaults", help="print every SGW_ variable with its default")
    env.set_defaults(func=_cmd_print_env)
    from gateway.tools import replay, simulate, tap

    simulate.register(sub)
    tap.register(sub)
    replay.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"streamgw: configuration error: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

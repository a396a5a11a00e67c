"""The operator's one settings tree, loaded once at start-up from ``SGW_OPERATOR_*`` variables.

Every field has a default and a docstring. A field's environment twin is the prefix, the section
(if any) and the field name, upper-cased and joined by ``_``: ``nats.url`` is
``SGW_OPERATOR_NATS_URL``, ``kv.bucket`` is ``SGW_OPERATOR_KV_BUCKET``, ``metrics_port`` is
``SGW_OPERATOR_METRICS_PORT``. :func:`load_settings` rejects unknown ``SGW_OPERATOR_*`` names
(typos), converts types and checks cross-field rules, raising
:class:`~sgw_operator.errors.ConfigError` that names the variable. This is the only module of the
operator that reads the environment (ruff TID251); it also reads the standard ``KUBECONFIG``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, Literal

from sgw_operator.errors import ConfigError

ENV_PREFIX: Final = "SGW_OPERATOR_"
_BUCKET_RE: Final = re.compile(r"^[A-Za-z0-9_-]+$")
_KEY_RE: Final = re.compile(r"^[-/_=.A-Za-z0-9]+$")
_NAMESPACE_RE: Final = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class NatsSettings:
    url: str = "nats://nats:4222"
    """NATS server URL(s), comma-separated. The default is the Service of the official NATS Helm
    chart in the operator's namespace; the chart sets it from ``nats.url``."""
    name: str = "sgw-operator"
    """Client name shown in NATS monitoring."""
    user: str | None = None
    """User for user/password auth (needs ``password``)."""
    password: str | None = None
    """Password for user/password auth (secret: never logged)."""
    token: str | None = None
    """Token auth (secret: never logged)."""
    creds_file: Path | None = None
    """A NATS ``.creds`` file (JWT + NKey seed), e.g. a mounted Secret."""
    tls_ca_file: Path | None = None
    """CA bundle to verify the NATS server; setting any ``tls_*`` enables TLS (a ``tls://`` URL
    alone uses the system CAs, and ``SSL_CERT_FILE`` if set)."""
    tls_cert_file: Path | None = None
    """Client certificate for mutual TLS (needs ``tls_key_file``)."""
    tls_key_file: Path | None = None
    """Client key for mutual TLS."""
    connect_timeout: float = 5.0
    """Seconds one connection attempt may take. The operator keeps retrying with backoff, and
    route status reports ``PublishFailed`` meanwhile."""


@dataclasses.dataclass(frozen=True)
class KvSettings:
    bucket: str = "sgw-routes"
    """JetStream KV bucket the compiled route table is written to; created if missing. Gateways
    watch the same bucket (their ``SGW_ROUTING__KV_BUCKET``)."""
    key: str = "table"
    """Key of the compiled table in the bucket (gateways: ``SGW_ROUTING__KV_KEY``)."""
    history: int = 5
    """Revisions the bucket keeps per key when the operator creates it: a few old tables stay
    readable for debugging (``nats kv history``) at negligible storage cost."""


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    nats: NatsSettings = dataclasses.field(default_factory=NatsSettings)
    """Connection to the NATS server that holds the route table."""
    kv: KvSettings = dataclasses.field(default_factory=KvSettings)
    """Where in NATS the route table lives."""
    namespaces: tuple[str, ...] = ()
    """Namespaces whose StreamRoutes (and their Secrets) are watched, comma-separated. Empty: all
    namespaces (needs cluster-wide RBAC)."""
    listen_host: str = "0.0.0.0"  # noqa: S104 - a pod's probes and scrapes come from outside it
    """Address the metrics and liveness endpoints listen on (tests use 127.0.0.1)."""
    metrics_port: int = 9091
    """Port of the Prometheus ``/metrics`` endpoint (0: any free port, for tests)."""
    health_port: int = 8081
    """Port of kopf's liveness endpoint ``/healthz``."""
    log_format: Literal["plain", "full", "json"] = "full"
    """kopf's log format; ``json`` for log collectors."""
    log_level: Literal["debug", "info", "warning"] = "info"
    """Log verbosity."""
    delete_timeout: float = 10.0
    """Seconds a deletion waits for the table without the route to be published before kopf
    retries it. The finalizer holds the object meanwhile, so a route never leaves the cluster
    while gateways may still use it."""
    stream_recheck: float = 30.0
    """Seconds after which the JetStream stream of a durable route that is not ready (missing,
    not covering its subjects, refused, NATS unreachable) is checked again, so a stream created
    or fixed by hand makes the route Ready without touching the StreamRoute."""
    kubeconfig: str | None = dataclasses.field(default=None, metadata={"env": "KUBECONFIG"})
    """The standard ``KUBECONFIG`` (not ``SGW_``-prefixed). When set, it wins over the in-cluster
    service account, so a developer or a test never talks to the cluster it happens to run in."""


def env_name(section: str | None, field: str) -> str:
    parts = [section, field] if section else [field]
    return ENV_PREFIX + "_".join(p.upper() for p in parts)


def _fields(cls: type[Any]) -> Iterator[tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        yield field, hints[field.name]


def _convert(var: str, raw: str, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if raw == "" else _convert(var, raw, inner[0])
    if origin is Literal:
        choices = typing.get_args(hint)
        value = raw.strip().lower()
        if value not in choices:
            raise ConfigError(var, f"must be one of {', '.join(choices)}; got {raw!r}")
        return value
    if origin is tuple:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    try:
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
    except ValueError:
        raise ConfigError(var, f"must be a {hint.__name__}; got {raw!r}") from None
    if hint is Path:
        return Path(raw)
    return raw


def _load_section(cls: type[Any], section: str | None, environ: Mapping[str, str], seen: set[str]) -> Any:
    values: dict[str, Any] = {}
    for field, hint in _fields(cls):
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[field.name] = _load_section(hint, field.name, environ, seen)
            continue
        var = field.metadata.get("env") or env_name(section, field.name)
        seen.add(var)
        if var in environ:
            values[field.name] = _convert(var, environ[var], hint)
    return cls(**values)


def known_variables() -> list[str]:
    """Every ``SGW_OPERATOR_*`` variable :func:`load_settings` understands."""
    seen: set[str] = set()
    _load_section(OperatorSettings, None, {}, seen)
    return sorted(v for v in seen if v.startswith(ENV_PREFIX))


def load_settings(environ: Mapping[str, str] | None = None) -> OperatorSettings:
    """Build and validate the settings from ``environ`` (default: the process environment)."""
    env = dict(os.environ if environ is None else environ)
    seen: set[str] = set()
    settings: OperatorSettings = _load_section(OperatorSettings, None, env, seen)
    unknown = sorted(k for k in env if k.startswith(ENV_PREFIX) and k not in seen)
    if unknown:
        raise ConfigError(
            unknown[0],
            f"unknown setting (known: {', '.join(sorted(v for v in seen if v.startswith(ENV_PREFIX)))})",
        )
    _validate(settings)
    return settings


def _validate(s: OperatorSettings) -> None:
    if not s.nats.url.strip():
        raise ConfigError(env_name("nats", "url"), "must name at least one NATS server")
    if (s.nats.user is None) != (s.nats.password is None):
        raise ConfigError(env_name("nats", "user"), "user and password must be set together")
    if (s.nats.tls_cert_file is None) != (s.nats.tls_key_file is None):
        raise ConfigError(env_name("nats", "tls_cert_file"), "certificate and key must be set together")
    if s.nats.connect_timeout <= 0:
        raise ConfigError(env_name("nats", "connect_timeout"), "must be > 0")
    if not _BUCKET_RE.match(s.kv.bucket):
        raise ConfigError(env_name("kv", "bucket"), f"{s.kv.bucket!r} is not a valid bucket name ([A-Za-z0-9_-]+)")
    if not _KEY_RE.match(s.kv.key) or s.kv.key.startswith(".") or s.kv.key.endswith("."):
        raise ConfigError(env_name("kv", "key"), f"{s.kv.key!r} is not a valid KV key")
    if not 1 <= s.kv.history <= 64:
        raise ConfigError(env_name("kv", "history"), "must be between 1 and 64 (a JetStream limit)")
    for ns in s.namespaces:
        if not _NAMESPACE_RE.match(ns) or len(ns) > 63:
            raise ConfigError(env_name(None, "namespaces"), f"{ns!r} is not a valid namespace name")
    for field in ("metrics_port", "health_port"):
        port = getattr(s, field)
        if not 0 <= port <= 65535:
            raise ConfigError(env_name(None, field), f"{port} is not a TCP port")
    if s.metrics_port and s.metrics_port == s.health_port:
        raise ConfigError(env_name(None, "metrics_port"), "must differ from SGW_OPERATOR_HEALTH_PORT")
    if s.delete_timeout <= 0:
        raise ConfigError(env_name(None, "delete_timeout"), "must be > 0")
    if s.stream_recheck <= 0:
        raise ConfigError(env_name(None, "stream_recheck"), "must be > 0")

"""The one settings tree of the gateway, loaded once at start-up from ``SGW_*`` variables and flags.

Every field has a default and a docstring (unit, reason). The environment twin of
``nats.url`` is ``SGW_NATS__URL``: prefix, section, double underscore, field, upper-cased.
:func:`load_settings` reads only ``SGW_`` variables, rejects unknown ones (typos), converts types,
applies command-line overrides and checks cross-field rules; failures raise
:class:`~gateway.errors.ConfigError` naming the variable. This is the only module that reads the
environment (ruff TID251 bans ``os.environ`` elsewhere). ``streamgw print-env-defaults`` prints
the whole tree as environment variables.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from gateway.errors import ConfigError

ENV_PREFIX = "SGW_"
_OTHER_COMPONENTS = ("SGW_OPERATOR_",)
"""Prefixes owned by other components (the operator); the gateway neither reads nor rejects them."""


@dataclasses.dataclass(frozen=True)
class ServerSettings:
    host: str = "0.0.0.0"  # noqa: S104 - a pod must listen on all interfaces
    """Address of the public (WebSocket) listener."""
    port: int = 8080
    """Public port: ``GET /stream``, ``GET /stream/{control_id}``, ``/status``."""
    internal_host: str = "0.0.0.0"  # noqa: S104
    """Address of the internal listener (metrics and probes)."""
    internal_port: int = 9090
    """Internal port: ``/metrics``, ``/healthz``, ``/readyz``. Must differ from ``port``."""
    tls_cert_file: Path | None = None
    """PEM certificate chain: serve ``wss`` directly. Leave unset behind a TLS-terminating ingress."""
    tls_key_file: Path | None = None
    """PEM private key for ``tls_cert_file``."""
    max_streams: int = 2000
    """Per-process limit of concurrent streams; upgrades beyond it get 503 so the LB retries elsewhere."""
    max_loop_lag: float = 0.25
    """Seconds the event loop may run late (smoothed) before new streams are refused with 503: the
    process is saturated and the load balancer should send the call to another pod. Streams already
    admitted are unaffected. ``0`` turns the check off."""
    workers: int = 1
    """Gateway processes sharing the public port (SO_REUSEPORT), one per core: each worker has its own
    event loop, NATS connection, stream limit and admission control; one supervisor serves the
    combined ``/metrics``, one ``/readyz`` and one drain. ``0``: one per CPU this process may use."""
    reuse_port: bool = False
    """Listen on the public port with SO_REUSEPORT (set by the supervisor for its workers)."""


@dataclasses.dataclass(frozen=True)
class WebSocketSettings:
    max_message_bytes: int = 65536
    """Largest WebSocket message accepted. A 20 ms L16/24 kHz media message is ~1.4 KB, so 64 KiB
    leaves room for long custom parameters while bounding memory per socket; larger closes 1009."""
    start_timeout: float = 10.0
    """Seconds a socket may stay open without sending ``start`` before it is closed (1008)."""
    heartbeat: float = 20.0
    """Seconds between WebSocket pings; a peer that does not answer is closed."""
    receive_timeout: float = 120.0
    """Seconds without any message after ``start`` before the stream is considered dead."""
    max_frame_payload_bytes: int = 16384
    """Largest decoded audio payload published as one NATS message; checked against the server's
    ``max_payload`` at connect so a frame never fails at publish time."""
    public_url: str = ""
    """``wss://host[:port][/prefix]`` the providers connect to. A Twilio ``X-Twilio-Signature``
    covers that URL: set this when a proxy or ingress rewrites the ``Host`` header or strips a path
    prefix. Empty: ``wss://`` + ``Host`` + the request target as received."""


@dataclasses.dataclass(frozen=True)
class NatsSettings:
    url: str = ""
    """NATS server URL(s), comma-separated. Empty: start an embedded nats-server on loopback."""
    name: str = "stream-gateway"
    """Client name shown in NATS monitoring."""
    user: str | None = None
    """User for user/password auth."""
    password: str | None = None
    """Password for user/password auth (secret: never logged)."""
    token: str | None = None
    """Token auth (secret: never logged)."""
    creds_file: Path | None = None
    """A NATS ``.creds`` file (JWT + NKey seed)."""
    nkey_seed_file: Path | None = None
    """A file holding an NKey seed."""
    tls_ca_file: Path | None = None
    """CA bundle to verify the NATS server; setting any ``tls_*`` enables TLS."""
    tls_cert_file: Path | None = None
    """Client certificate for mutual TLS."""
    tls_key_file: Path | None = None
    """Client key for mutual TLS."""
    connect_timeout: float = 2.0
    """Seconds for one connection attempt. It also bounds how long a hung server (it accepts the
    TCP connection, then answers nothing) can hold up a reconnect before the next server is tried."""
    initial_connect_timeout: float = 30.0
    """Seconds start-up keeps retrying the first connection before it fails with a configuration
    error (a wrong credential or an unreachable server would otherwise hang start-up for ever)."""
    reconnect_wait: float = 0.5
    """Seconds between reconnection attempts. Short: audio is buffering meanwhile."""
    ping_interval: float = 10.0
    """Seconds between client PINGs; a dead server is noticed after ``2 * ping_interval``."""
    confirm_timeout: float = 2.0
    """Seconds NATS may take to confirm what was published (a PING/PONG round trip). A server that
    takes longer is hung, or the path to it is: the connection is dropped and another server of
    the URL list is tried, with ``/readyz`` 503 until one confirms again. Unconfirmed audio is
    sent again there, so nothing is lost. A server that is slow but still reads what the gateway
    sends (a backlog of over 64 KiB draining) is not hung: the clock restarts while it reads."""
    flush_interval: float = 0.001
    """Seconds frames may wait to be written to NATS together: one system call carries every frame
    read meanwhile. uvloop's timers count whole milliseconds, so 0.001 waits one to two ms, and
    any value under it means "after the event loop's next poll"; ``0`` writes at the end of every
    iteration. 1 ms against the former 0.5 ms (which uvloop ran as the next poll): 10 % less CPU
    at 300 real-time calls (37.3 against 41.3 % of a core, the same session, bench/RESULTS.md) and
    less for nats-server, for 1.1 ms more median latency (p99 3.2 ms)."""
    confirm_interval: float = 0.005
    """Seconds between two confirmation round trips (one PING at a time). Shorter confirms sooner
    (fewer frames to send again after a server crash), longer costs fewer PINGs."""
    resend_window: float = 0.1
    """Seconds a message NATS confirmed is still sent again if the connection breaks. A server's
    PONG means it has read the message, not yet that it has passed it to subscribers and cluster
    routes; a server killed in that moment loses it. Sending the last moments again turns that
    loss into a possible duplicate (same ``Sgw-Seq``). ``0`` sends again only the unconfirmed."""
    pending_bytes: int = 8 * 1024 * 1024
    """Bytes that may wait in the socket for a slow NATS server before the gateway pauses reading
    the provider sockets (back-pressure); also nats-py's own ``pending_size``."""
    jetstream_window: int = 128
    """JetStream routes: publishes per stream that may await their acknowledgement at once. A
    stream keeps up while ``window`` messages per round trip exceed its rate (a both-tracks 20 ms
    stream sends 100 per second: a window of 5 is enough across a 50 ms round trip); the rest of
    the window empties an outage's backlog quickly. ``1`` waits for each acknowledgement in turn."""
    jetstream_ack_timeout: float = 2.0
    """JetStream routes: seconds a publish may wait for the stream's acknowledgement before it is
    sent again (same ``Nats-Msg-Id``: the stream stores it once)."""


@dataclasses.dataclass(frozen=True)
class BufferSettings:
    max_frames: int = 1500
    """Audio frames held per stream between the socket reader and NATS: 1500 is 15 s of a
    both-tracks 20 ms stream (30 s of one track). An outage shorter than that loses nothing."""
    max_events: int = 200
    """Lifecycle events (dtmf, mark, ...) held per stream while NATS cannot take them. They leave
    at once while NATS keeps up; a provider that floods them past this bound is closed with 1008
    and the refused event is counted (``sgw_events_dropped_total{reason="flood"}``). ``error`` and
    ``stopped`` are always kept, so a stream still ends properly on the bus."""
    max_pause: float = 2.0
    """Seconds the provider sockets may stay paused while NATS is connected but not keeping up (a
    saturated server). Pausing loses nothing; past this bound the sockets are read again and the
    stream buffers take the audio, dropping (and counting) the oldest past ``max_frames``."""
    overflow: Literal["drop_oldest", "close"] = "drop_oldest"
    """Policy when full: ``drop_oldest`` drops the oldest audio frame and counts it
    (``sgw_frames_dropped_total{reason="backpressure"}``); ``close`` ends the stream with 1013."""


@dataclasses.dataclass(frozen=True)
class RoutingSettings:
    source: Literal["auto", "static", "file", "natskv"] = "auto"
    """Where routes come from. ``auto``: ``file`` if ``file`` is set, else ``static`` (the default
    route), whether or not a NATS URL is set. ``natskv`` (the operator's bucket) is used only when
    selected explicitly, as the Helm chart does: a gateway pointed at its own NATS must stream at
    once, not wait for an operator it does not have."""
    file: Path | None = None
    """A YAML file of StreamRoute manifests (as ``kubectl apply`` takes them); reloaded on change."""
    secrets_dir: Path | None = None
    """Where ``bearerTokenSecretRef {name, key}`` is read in file mode: ``DIR/<name>/<key>``."""
    kv_bucket: str = "sgw-routes"
    """NATS KV bucket the operator writes the compiled table to."""
    kv_key: str = "table"
    """Key of the compiled table in the bucket."""
    default_route: bool | None = None
    """Publish unmatched streams on ``audio.{call_id}.{track}`` instead of closing them 1008.
    Unset: on for the static source (the quick start, and ``serve --nats-url`` without routes),
    off for a routes file and the KV bucket."""
    file_poll_interval: float = 1.0
    """Seconds between checks of the routes file for changes."""
    initial_table_timeout: float = 10.0
    """Seconds start-up waits for the first table from the KV bucket before it opens the listeners
    anyway. Without a table the gateway stays unready and answers upgrades with 503 until the
    operator writes one; it never exits for want of routes."""


@dataclasses.dataclass(frozen=True)
class ObservabilitySettings:
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Root log level. Per-frame logs exist only at DEBUG."""
    log_format: Literal["text", "json"] = "text"
    """``json`` for log shippers."""
    otlp_endpoint: str = ""
    """OTLP/HTTP traces endpoint (e.g. ``http://otel-collector:4318/v1/traces``). Empty: no export
    (spans still carry ``traceparent`` to consumers)."""
    service_name: str = "stream-gateway"
    """``service.name`` resource attribute of the spans."""
    trace_sample_ratio: float = 1.0
    """Fraction of streams whose spans are sampled (one span per stream, so 1.0 is cheap)."""
    secret_parameters: tuple[str, ...] = (
        "token",
        "auth",
        "authorization",
        "password",
        "secret",
        "api_key",
    )
    """Custom parameters whose values are replaced by ``***`` in events and logs (case-insensitive
    substring match on the name)."""


@dataclasses.dataclass(frozen=True)
class ShutdownSettings:
    drain_seconds: float = 30.0
    """After SIGTERM, how long live streams may continue before they are closed with 1001. Keep it
    below the pod's ``terminationGracePeriodSeconds`` minus the preStop delay."""
    close_concurrency: int = 100
    """Sockets closed at once when the drain deadline passes (bounded to avoid a burst)."""


@dataclasses.dataclass(frozen=True)
class StatusSettings:
    allow_unauthenticated: bool | None = None
    """Accept ``/status`` callbacks that carry no valid credential. Unset: only for a local quick
    start (embedded NATS and the public listener on loopback, as ``make run``); otherwise every
    callback needs one of the credentials below, and with none configured ``/status`` answers 401."""
    public_base_url: str = ""
    """``scheme://host[:port][/prefix]`` the providers call ``/status`` at: signatures cover the URL
    the provider called, so behind a proxy or ingress set it. Empty: rebuilt from the request
    (``X-Forwarded-Proto`` / ``X-Forwarded-Host``, else the listener's scheme and ``Host``)."""
    twilio_auth_token_file: Path | None = None
    """File holding the Twilio Auth Token (one per line: both during a rotation); checks ``X-Twilio-Signature``."""
    signalwire_signing_key_file: Path | None = None
    """File holding the SignalWire project's Signing Key (one per line); checks ``X-SignalWire-Signature``
    (SWML JSON and cXML forms) and SignalWire's ``X-Twilio-Signature``."""
    telnyx_public_key_file: Path | None = None
    """File holding the Telnyx account's public key (base64 as the portal shows it, or PEM; one per
    line); checks ``telnyx-signature-ed25519`` over ``telnyx-timestamp|body``."""
    telnyx_max_age: float = 300.0
    """Seconds a ``telnyx-timestamp`` may lie from this clock; older (replayed) callbacks get 401."""
    plivo_auth_token_file: Path | None = None
    """File holding the Plivo Auth Token (one per line); checks ``X-Plivo-Signature-V3``."""
    bearer_token_file: Path | None = None
    """File holding shared tokens (one per line) accepted as ``Authorization: Bearer <token>``."""
    basic_username_file: Path | None = None
    """File holding the user name accepted as HTTP Basic credentials (Bandwidth's ``username`` for
    ``streamEventUrl``, or ``https://user:password@host/status`` callback URLs)."""
    basic_password_file: Path | None = None
    """File holding the password for ``basic_username_file`` (trailing whitespace stripped)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    server: ServerSettings = dataclasses.field(default_factory=ServerSettings)
    websocket: WebSocketSettings = dataclasses.field(default_factory=WebSocketSettings)
    nats: NatsSettings = dataclasses.field(default_factory=NatsSettings)
    buffer: BufferSettings = dataclasses.field(default_factory=BufferSettings)
    routing: RoutingSettings = dataclasses.field(default_factory=RoutingSettings)
    observability: ObservabilitySettings = dataclasses.field(default_factory=ObservabilitySettings)
    shutdown: ShutdownSettings = dataclasses.field(default_factory=ShutdownSettings)
    status: StatusSettings = dataclasses.field(default_factory=StatusSettings)

    @property
    def embedded_nats(self) -> bool:
        return not self.nats.url

    @property
    def routing_source(self) -> Literal["static", "file", "natskv"]:
        src = self.routing.source
        if src != "auto":
            return src
        if self.routing.file is not None:
            return "file"
        return "static"

    @property
    def default_route_enabled(self) -> bool:
        if self.routing.default_route is not None:
            return self.routing.default_route
        return self.routing_source == "static"

    @property
    def status_unauthenticated(self) -> bool:
        """``/status`` accepts callbacks without a credential: as set, else only when NATS is the
        embedded one and the public listener is on loopback (the local quick start)."""
        if self.status.allow_unauthenticated is not None:
            return self.status.allow_unauthenticated
        return self.embedded_nats and _is_loopback(self.server.host)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def env_name(section: str, field: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}__{field.upper()}"


def iter_fields() -> Iterator[tuple[str, str, Any, Any]]:
    """(section, field, type, default) for every setting, in declaration order."""
    for section in dataclasses.fields(Settings):
        cls = typing.get_type_hints(Settings)[section.name]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else None
            yield section.name, f.name, hints[f.name], default


def _convert(raw: str, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if raw == "" and type(None) in args:
            return None
        return _convert(raw, non_none[0], where)
    if origin is Literal:
        if raw not in args:
            raise ConfigError(where, f"{raw!r} is not one of {', '.join(map(str, args))}")
        return raw
    if origin is tuple:
        return tuple(p.strip() for p in raw.split(",") if p.strip())
    if tp is bool:
        low = raw.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(where, f"{raw!r} is not a boolean (true/false)")
    try:
        if tp is int:
            return int(raw)
        if tp is float:
            return float(raw)
    except ValueError:
        raise ConfigError(where, f"{raw!r} is not a {tp.__name__}") from None
    if tp is Path:
        return Path(raw)
    return raw


def load_settings(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the settings from ``SGW_*`` variables, then ``overrides`` (``"nats.url": ...``, from flags)."""
    env = os.environ if environ is None else environ
    known = {env_name(s, f): (s, f, tp) for s, f, tp, _ in iter_fields()}
    unknown = sorted(
        k for k in env if k.startswith(ENV_PREFIX) and k not in known and not k.startswith(_OTHER_COMPONENTS)
    )
    if unknown:
        raise ConfigError(unknown[0], "unknown setting (see `streamgw print-env-defaults`)")
    values: dict[str, dict[str, Any]] = {}
    for name, (section, field, tp) in known.items():
        if name in env:
            values.setdefault(section, {})[field] = _convert(env[name], tp, name)
    fields = {(s, f): tp for s, f, tp, _ in iter_fields()}
    for dotted, value in (overrides or {}).items():
        section, _, field = dotted.partition(".")
        if (section, field) not in fields:
            raise ConfigError(dotted, "unknown setting")
        if value is not None:
            values.setdefault(section, {})[field] = value
    hints = typing.get_type_hints(Settings)
    settings = Settings(**{s: hints[s](**kw) for s, kw in values.items()})
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Cross-field rules; each failure names the setting to change."""
    srv, ws, buf = settings.server, settings.websocket, settings.buffer
    for name, port in (("server.port", srv.port), ("server.internal_port", srv.internal_port)):
        if not 0 <= port <= 65535:
            raise ConfigError(env_name(*name.split(".")), f"port {port} out of range")
    if srv.port == srv.internal_port and srv.port != 0:
        raise ConfigError(env_name("server", "internal_port"), "must differ from SGW_SERVER__PORT")
    if (srv.tls_cert_file is None) != (srv.tls_key_file is None):
        raise ConfigError(
            env_name("server", "tls_key_file"),
            "set both tls_cert_file and tls_key_file, or neither",
        )
    if srv.workers < 0:
        raise ConfigError(env_name("server", "workers"), "must be 0 (one per CPU) or more")
    if srv.max_streams < 1:
        raise ConfigError(env_name("server", "max_streams"), "must be at least 1")
    if ws.max_message_bytes < 1024:
        raise ConfigError(env_name("websocket", "max_message_bytes"), "must be at least 1024")
    if ws.max_frame_payload_bytes > ws.max_message_bytes:
        raise ConfigError(env_name("websocket", "max_frame_payload_bytes"), "cannot exceed max_message_bytes")
    if ws.start_timeout <= 0 or ws.receive_timeout <= 0:
        raise ConfigError(env_name("websocket", "start_timeout"), "timeouts must be positive")
    if ws.public_url:
        parts = urlsplit(ws.public_url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(
                env_name("websocket", "public_url"),
                f"{ws.public_url!r} is not a wss://host[:port][/prefix] URL without query",
            )
    if buf.max_frames < 1:
        raise ConfigError(env_name("buffer", "max_frames"), "must be at least 1")
    if buf.max_events < 1:
        raise ConfigError(env_name("buffer", "max_events"), "must be at least 1")
    if settings.routing_source == "file" and settings.routing.file is None:
        raise ConfigError(env_name("routing", "file"), "routing.source=file needs a routes file")
    if settings.routing_source == "natskv" and settings.embedded_nats and settings.routing.source == "natskv":
        # The embedded broker is private to this process: nobody else could write routes into it.
        raise ConfigError(env_name("routing", "source"), "natskv needs SGW_NATS__URL (the operator's NATS)")
    if settings.nats.confirm_interval < 0 or settings.nats.confirm_interval >= settings.nats.confirm_timeout:
        raise ConfigError(env_name("nats", "confirm_interval"), "must be at least 0 and below confirm_timeout")
    if settings.nats.resend_window < 0:
        raise ConfigError(env_name("nats", "resend_window"), "must be at least 0")
    if settings.nats.confirm_timeout <= 0:
        raise ConfigError(env_name("nats", "confirm_timeout"), "must be positive")
    if settings.nats.jetstream_window < 1:
        raise ConfigError(env_name("nats", "jetstream_window"), "must be at least 1")
    if settings.nats.jetstream_ack_timeout <= 0:
        raise ConfigError(env_name("nats", "jetstream_ack_timeout"), "must be positive")
    if not 0.0 <= settings.observability.trace_sample_ratio <= 1.0:
        raise ConfigError(env_name("observability", "trace_sample_ratio"), "must be within 0..1")
    if settings.shutdown.drain_seconds < 0:
        raise ConfigError(env_name("shutdown", "drain_seconds"), "must not be negative")
    _validate_status(settings.status)


def _validate_status(st: StatusSettings) -> None:
    if st.public_base_url:
        parts = urlsplit(st.public_base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConfigError(
                env_name("status", "public_base_url"),
                f"{st.public_base_url!r} is not an http(s)://host[:port][/prefix] URL without query",
            )
    if st.telnyx_max_age <= 0:
        raise ConfigError(env_name("status", "telnyx_max_age"), "must be positive")
    if (st.basic_username_file is None) != (st.basic_password_file is None):
        raise ConfigError(env_name("status", "basic_password_file"), "set both basic_*_file settings, or neither")


def env_defaults() -> list[tuple[str, str, str]]:
    """(variable, default as text, docstring) for ``print-env-defaults`` and the docs."""
    docs = _field_docs()
    out = []
    for section, field, _, default in iter_fields():
        if isinstance(default, tuple):
            text = ",".join(default)
        elif default is None:
            text = ""
        else:
            text = str(default)
        out.append((env_name(section, field), text, docs.get((section, field), "")))
    return out


def _field_docs() -> dict[tuple[str, str], str]:
    """Attribute docstrings, read from the source (the kopf settings convention)."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(inspect.getmodule(Settings)))  # type: ignore[arg-type]
    classes = {typing.get_type_hints(Settings)[f.name].__name__: f.name for f in dataclasses.fields(Settings)}
    docs: dict[tuple[str, str], str] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in classes:
            body = node.body
            for i, stmt in enumerate(body[:-1]):
                nxt = body[i + 1]
                if (
                    isinstance(stmt, ast.AnnAssign)
                    and isinstance(stmt.target, ast.Name)
                    and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)
                ):
                    docs[(classes[node.name], stmt.target.id)] = " ".join(nxt.value.value.split())
    return docs

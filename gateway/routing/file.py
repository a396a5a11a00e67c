"""Routes from a YAML file of StreamRoute manifests, reloaded when the file changes.

The file holds exactly what ``kubectl apply -f`` takes (multi-document YAML; other kinds are
skipped), so one file serves both worlds. Secrets are read from ``SECRETS_DIR/<name>/<key>``, the
layout Kubernetes uses to mount a Secret (trailing whitespace stripped): ``bearerTokenSecretRef
{name, key}``, ``basicAuthSecretRef {name}`` (keys ``username`` and ``password``) and
``twilioSignature.authTokenSecretRef {name, key}``. Each is reduced to its stored form at once
(``sgw_routes.credentials``); the table never holds the secret. At start-up an invalid file (an
unknown field included) is a :class:`~gateway.errors.ConfigError`; on reload the previous table
stays in force and the problem is logged and counted, so a bad edit never takes routes away from
live traffic. Polling (not inotify) because mounted ConfigMaps change by symlink swap.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from pathlib import Path
from typing import Any

import yaml

from gateway.errors import ConfigError
from gateway.routing.source import BaseSource
from sgw_routes.compile import RouteSecrets, compile_table
from sgw_routes.credentials import BASIC_PASSWORD_KEY, BASIC_USERNAME_KEY, hash_basic, twilio_key
from sgw_routes.manifest import KIND, InvalidRoute, StreamRouteSpec, parse_streamroute
from sgw_routes.model import RoutingTable, default_route, hash_token

logger = logging.getLogger(__name__)


def load_routes_file(path: Path, secrets_dir: Path | None, *, default: bool, version: int) -> RoutingTable:
    """Parse, validate, resolve secrets and compile. Raises ConfigError naming the problem."""
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("SGW_ROUTING__FILE", f"cannot read {path}: {exc}") from None
    specs: list[StreamRouteSpec] = []
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != KIND:
            continue
        try:
            specs.append(parse_streamroute(doc))
        except InvalidRoute as exc:
            name = (doc.get("metadata") or {}).get("name", "?")
            raise ConfigError("SGW_ROUTING__FILE", f"StreamRoute {name!r}: {exc.reason}: {exc.message}") from None
    resolved = {s.key: _resolve(s, secrets_dir) for s in specs}
    compiled = compile_table(
        specs,
        resolved,
        version=version,
        default=default_route() if default else None,
        qualified=False,
    )
    for loser, winner in compiled.conflicts.items():
        logger.warning("StreamRoute %s conflicts with %s (identical match); %s wins", loser, winner, winner)
    return compiled.table


def _resolve(spec: StreamRouteSpec, secrets_dir: Path | None) -> RouteSecrets:
    """The route's credentials in their stored forms; a missing or unusable file is a ConfigError."""
    bearer = basic = twilio = None
    if spec.secret_ref is not None:
        bearer = hash_token(_read_secret(spec, secrets_dir, spec.secret_ref.name, spec.secret_ref.key))
    if spec.basic_secret is not None:
        username = _read_secret(spec, secrets_dir, spec.basic_secret, BASIC_USERNAME_KEY)
        password = _read_secret(spec, secrets_dir, spec.basic_secret, BASIC_PASSWORD_KEY)
        try:
            basic = hash_basic(username, password)
        except ValueError as exc:
            raise ConfigError(
                "SGW_ROUTING__SECRETS_DIR", f"StreamRoute {spec.name!r}: Secret {spec.basic_secret!r}: {exc}"
            ) from None
    if spec.twilio_ref is not None:
        twilio = twilio_key(_read_secret(spec, secrets_dir, spec.twilio_ref.name, spec.twilio_ref.key))
    return RouteSecrets(token_sha256=bearer, basic_sha256=basic, twilio_key=twilio)


def _read_secret(spec: StreamRouteSpec, secrets_dir: Path | None, name: str, key: str) -> str:
    if secrets_dir is None:
        raise ConfigError(
            "SGW_ROUTING__SECRETS_DIR",
            f"StreamRoute {spec.name!r} references Secret {name!r}: set --secrets-dir",
        )
    path = secrets_dir / name / key
    try:
        value = path.read_text().rstrip()
    except (OSError, UnicodeDecodeError):
        raise ConfigError(
            "SGW_ROUTING__SECRETS_DIR",
            f"StreamRoute {spec.name!r}: secret file {path} not readable as UTF-8 text",
        ) from None
    if not value:
        raise ConfigError("SGW_ROUTING__SECRETS_DIR", f"StreamRoute {spec.name!r}: secret file {path} is empty")
    return value


class FileRouteSource(BaseSource):
    def __init__(self, path: Path, secrets_dir: Path | None, *, default: bool, poll_interval: float = 1.0) -> None:
        super().__init__()
        self._path = path
        self._secrets_dir = secrets_dir
        self._default = default
        self._poll = poll_interval
        self._fingerprint = b""
        self._version = 0
        self._task: asyncio.Task[None] | None = None
        self.reload_errors = 0

    def _fingerprint_now(self) -> bytes:
        digest = hashlib.sha256()
        with contextlib.suppress(OSError):
            digest.update(self._path.read_bytes())
        if self._secrets_dir is not None and self._secrets_dir.is_dir():
            for f in sorted(self._secrets_dir.rglob("*")):
                with contextlib.suppress(OSError):
                    if f.is_file():
                        digest.update(str(f).encode() + b"\0" + f.read_bytes())
        return digest.digest()

    def _load(self) -> RoutingTable:
        self._version += 1
        return load_routes_file(self._path, self._secrets_dir, default=self._default, version=self._version)

    async def start(self) -> None:
        self._fingerprint = self._fingerprint_now()
        self._swap(self._load())
        self._task = asyncio.create_task(self._watch(), name="routes-file-watch")

    async def reload_if_changed(self) -> bool:
        """Reload when the file or a secret changed; returns True if a new table was applied."""
        fingerprint = self._fingerprint_now()
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        try:
            table = self._load()
        except ConfigError as exc:
            self.reload_errors += 1
            self._reject(exc.message)
            logger.error("routes file not reloaded, previous routes stay in force: %s", exc)
            return False
        self._swap(table)
        logger.info(
            "routes reloaded from %s: %d routes (version %d)",
            self._path,
            len(table.routes),
            table.version,
        )
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._poll)
            await self.reload_if_changed()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def describe(table: RoutingTable) -> list[dict[str, Any]]:
    """A log/CLI friendly view of a table (which auth kinds, never their stored forms)."""
    return [
        {
            "name": r.name,
            "controlId": r.control_id,
            "priority": r.priority,
            "subject": r.subject,
            "auth": ",".join(r.auth_kinds) or "none",
        }
        for r in table.routes
    ]

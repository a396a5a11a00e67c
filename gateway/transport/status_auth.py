"""Who may post to ``/status``: the status credentials, read from files, and the check of one callback.

Anyone who reaches the public port could otherwise publish ``status`` events for any call, so every
callback must prove where it comes from: a provider signature (Twilio, SignalWire, Telnyx, Plivo;
the schemes are in :mod:`gateway.protocol.signatures`) or a shared secret (``Authorization:
Bearer``, or HTTP Basic as Bandwidth sends it). A verified signature also names the provider, which
tells look-alike callbacks apart (TeXML and cXML). With no credential configured every callback is
refused with 401, unless ``status.allow_unauthenticated`` is set, or left unset on a local quick
start (:attr:`~gateway.settings.Settings.status_unauthenticated`).

The secrets live in files (mounted Secrets), read at start-up (an unreadable, empty or malformed
file is a :class:`~gateway.errors.ConfigError` naming its variable) and read again when they change
(a Secret rotation), at most every few seconds and only when a callback arrives. Secrets are never
logged; refusals are logged at most once a minute with what to fix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Final

from gateway.errors import ConfigError
from gateway.protocol import signatures
from gateway.settings import Settings, StatusSettings, env_name

logger = logging.getLogger(__name__)

RELOAD_EVERY: Final = 5.0
"""Seconds between two looks at the credential files (only while callbacks arrive)."""
HINT_EVERY: Final = 60.0
"""Seconds between two log lines about refused callbacks."""

_SIGNATURE_PROVIDERS: Final = (
    ("x-signalwire-signature", "signalwire"),
    ("x-twilio-signature", "twilio"),
    ("telnyx-signature-ed25519", "telnyx"),
    ("x-plivo-signature-v3", "plivo"),
)
"""Signature header -> the provider that sends it (for the metric label of a refused callback)."""


def _digest(value: str) -> bytes:
    # Compared as fixed-length digests: constant time whatever the presented length.
    return hashlib.sha256(value.encode()).digest()


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the status settings' files hold. ``bearer`` and ``basic`` are SHA-256 digests."""

    twilio: tuple[str, ...] = ()
    signalwire: tuple[str, ...] = ()
    telnyx: tuple[bytes, ...] = ()
    plivo: tuple[str, ...] = ()
    bearer: tuple[bytes, ...] = ()
    basic: tuple[bytes, bytes] | None = None

    def schemes(self) -> list[str]:
        """The configured credentials, for the start-up log."""
        names = {
            "twilio": "Twilio signature",
            "signalwire": "SignalWire signature",
            "telnyx": "Telnyx signature",
            "plivo": "Plivo signature",
            "bearer": "bearer token",
            "basic": "HTTP Basic",
        }
        return [names[f.name] for f in fields(self) if getattr(self, f.name)]


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """The parts of one ``/status`` request a signature covers."""

    method: str
    url: str
    """The public URL the provider called (:func:`gateway.transport.status.public_url`)."""
    headers: Mapping[str, str]
    """Lower-cased names."""
    body: bytes
    body_params: signatures.Params = ()
    """The url-encoded form fields of the body (empty for JSON and GET)."""
    json_body: bool = False


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer for one callback."""

    accepted: bool
    provider: str | None = None
    """The provider whose signature verified (it sent the callback), or None (a shared secret, or open)."""
    claimed: str = "unknown"
    """The provider whose signature header came (the metric label of a refused callback)."""
    problem: str = ""
    """Why it was refused: for the 401 body and the log, never a secret."""


def _read_lines(path: Path, setting: str) -> list[str]:
    name = env_name("status", setting)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(name, f"cannot read {path}: {reason}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ConfigError(name, f"{path} is empty")
    return lines


def _telnyx_keys(path: Path) -> tuple[bytes, ...]:
    lines = _read_lines(path, "telnyx_public_key_file")
    blocks: list[str] = []
    pem: list[str] | None = None
    for line in lines:  # PEM blocks span lines; bare base64 keys are one a line
        if line.startswith("-----BEGIN"):
            pem = [line]
        elif pem is not None:
            pem.append(line)
            if line.startswith("-----END"):
                blocks.append("\n".join(pem))
                pem = None
        else:
            blocks.append(line)
    keys = []
    for number, block in enumerate(blocks, 1):
        try:
            keys.append(signatures.ed25519_public_key(block))
        except ValueError as exc:
            raise ConfigError(
                env_name("status", "telnyx_public_key_file"),
                f"{path}: key {number} is not an Ed25519 public key ({exc}); paste the base64 public key "
                "from the Telnyx portal",
            ) from None
    if pem is not None:
        raise ConfigError(env_name("status", "telnyx_public_key_file"), f"{path}: unterminated PEM block")
    return tuple(keys)


def _lines_of(st: StatusSettings, setting: str) -> tuple[str, ...]:
    path: Path | None = getattr(st, setting)
    return tuple(_read_lines(path, setting)) if path is not None else ()


def load_credentials(st: StatusSettings) -> Credentials:
    """Read every configured credential file (ConfigError names the variable of the first bad one)."""
    basic = None
    if st.basic_username_file is not None and st.basic_password_file is not None:
        user = _read_lines(st.basic_username_file, "basic_username_file")[0]
        password = st.basic_password_file
        try:
            secret = password.read_text(encoding="utf-8").rstrip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(env_name("status", "basic_password_file"), f"cannot read {password}: {reason}") from None
        if not secret:
            raise ConfigError(env_name("status", "basic_password_file"), f"{password} is empty")
        basic = (_digest(user), _digest(secret))
    return Credentials(
        twilio=_lines_of(st, "twilio_auth_token_file"),
        signalwire=_lines_of(st, "signalwire_signing_key_file"),
        telnyx=_telnyx_keys(st.telnyx_public_key_file) if st.telnyx_public_key_file else (),
        plivo=_lines_of(st, "plivo_auth_token_file"),
        bearer=tuple(_digest(token) for token in _lines_of(st, "bearer_token_file")),
        basic=basic,
    )


def _credential_files(st: StatusSettings) -> tuple[Path, ...]:
    return tuple(getattr(st, f.name) for f in fields(st) if f.name.endswith("_file") and getattr(st, f.name))


def _stamp(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int] | None, ...]:
    out: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = path.stat()  # follows the symlinks a mounted Secret swaps on rotation
        except OSError:
            out.append(None)
        else:
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(out)


@dataclass
class _Hint:
    """At most one log line per :data:`HINT_EVERY` seconds, counting what it did not log."""

    last: float = float("-inf")
    suppressed: int = 0

    def due(self, now: float) -> bool:
        if now - self.last >= HINT_EVERY:
            self.last = now
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        count, self.suppressed = self.suppressed, 0
        return count


@dataclass
class StatusAuth:
    """The status credentials of one gateway process and the policy that goes with them."""

    settings: StatusSettings
    open: bool
    """Callbacks without a valid credential are accepted (``status_unauthenticated``)."""
    credentials: Credentials
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    _files: tuple[Path, ...] = ()
    _stamp: tuple[tuple[int, int, int] | None, ...] = ()
    _next_check: float = 0.0
    _hints: dict[str, _Hint] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> StatusAuth:
        """Read the credential files now: a bad one stops the start-up with its variable's name."""
        files = _credential_files(settings.status)
        stamp = _stamp(files)
        auth = cls(settings.status, settings.status_unauthenticated, load_credentials(settings.status))
        auth._files, auth._stamp = files, stamp
        auth._next_check = auth.monotonic() + RELOAD_EVERY
        return auth

    def describe(self) -> tuple[int, str]:
        """(log level, line) for the start-up log: what ``/status`` accepts."""
        schemes = self.credentials.schemes()
        st = self.settings
        if self.open and st.allow_unauthenticated is None:
            return logging.INFO, (
                "/status accepts callbacks without authentication: embedded NATS and the public port on "
                "loopback (a local quick start); configure a credential or set "
                f"{env_name('status', 'allow_unauthenticated')}=false to require one"
            )
        if self.open:
            extra = f" (credentials also checked: {', '.join(schemes)})" if schemes else ""
            return logging.WARNING, (
                f"/status accepts callbacks without authentication ({env_name('status', 'allow_unauthenticated')}"
                f"=true): anyone who reaches the public port can publish status events{extra}"
            )
        if not schemes:
            return logging.WARNING, f"/status refuses every callback with 401: {_NO_CREDENTIAL_HINT}"
        where = st.public_base_url or "rebuilt from each request's Host and X-Forwarded-* headers"
        return logging.INFO, f"/status accepts callbacks authenticated by: {', '.join(schemes)} (public URL: {where})"

    def refresh(self) -> None:
        """Read the credential files again if one changed (checked at most every :data:`RELOAD_EVERY` s)."""
        now = self.monotonic()
        if now < self._next_check or not self._files:
            return
        self._next_check = now + RELOAD_EVERY
        stamp = _stamp(self._files)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self.credentials = load_credentials(self.settings)
        except ConfigError as exc:
            logger.warning("status credentials changed but cannot be read, keeping the previous ones: %s", exc.message)
        else:
            logger.info("status credentials reloaded: %s", ", ".join(self.credentials.schemes()) or "none")

    def authenticate(self, request: CallbackRequest) -> Verdict:
        """Accept the callback if any configured credential verifies it (a provider signature first,
        since it also names the provider), or if ``/status`` is open."""
        self.refresh()
        creds, h = self.credentials, request.headers
        claimed = next((p for name, p in _SIGNATURE_PROVIDERS if name in h), "unknown")
        problems: list[str] = []

        def hmac_sha1(keys: tuple[str, ...], signature: str) -> bool:
            return signatures.check_twilio(
                keys,
                signature,
                request.url,
                method=request.method,
                params=request.body_params,
                body=request.body,
                json_body=request.json_body,
            )

        if (sig := h.get("x-signalwire-signature")) is not None:
            if signatures.check_signalwire(
                creds.signalwire,
                sig,
                request.url,
                method=request.method,
                params=request.body_params,
                body=request.body,
                json_body=request.json_body,
            ):
                return Verdict(True, "signalwire", claimed)
            problems.append(_mismatch("X-SignalWire-Signature", creds.signalwire, "signalwire_signing_key_file"))
        if (sig := h.get("x-twilio-signature")) is not None:
            if hmac_sha1(creds.twilio, sig):
                return Verdict(True, "twilio", claimed)
            if hmac_sha1(creds.signalwire, sig):  # SignalWire's compatibility alias
                return Verdict(True, "signalwire", claimed)
            problems.append(_mismatch("X-Twilio-Signature", creds.twilio + creds.signalwire, "twilio_auth_token_file"))
        if (sig := h.get("telnyx-signature-ed25519")) is not None:
            timestamp = h.get("telnyx-timestamp", "")
            if not creds.telnyx:
                problems.append(_mismatch("telnyx-signature-ed25519", (), "telnyx_public_key_file"))
            elif not signatures.timestamp_fresh(timestamp, self.clock(), self.settings.telnyx_max_age):
                problems.append(
                    f"telnyx-timestamp {timestamp[:20]!r} is more than {self.settings.telnyx_max_age:g}s away from "
                    "this clock (a replay, or a clock out of sync)"
                )
            elif signatures.check_telnyx(creds.telnyx, sig, timestamp, request.body):
                return Verdict(True, "telnyx", claimed)
            else:
                problems.append("telnyx-signature-ed25519 does not verify with the configured public key")
        if (sig := h.get("x-plivo-signature-v3")) is not None:
            nonce = h.get("x-plivo-signature-v3-nonce", "")
            if creds.plivo and request.json_body:
                problems.append("X-Plivo-Signature-V3 on a JSON body cannot be checked (Plivo signs form fields)")
            elif signatures.check_plivo(
                creds.plivo, sig, nonce, request.url, method=request.method, params=request.body_params
            ):
                return Verdict(True, "plivo", claimed)
            else:
                problems.append(_mismatch("X-Plivo-Signature-V3", creds.plivo, "plivo_auth_token_file"))
        scheme, _, value = h.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            presented = _digest(value.strip())
            if any(hmac.compare_digest(presented, token) for token in creds.bearer):
                return Verdict(True, None, claimed)
            problems.append(
                "the bearer token is not one of the configured ones"
                if creds.bearer
                else f"a bearer token came but {env_name('status', 'bearer_token_file')} is not set"
            )
        elif scheme.lower() == "basic":
            if creds.basic is not None and _basic_matches(value.strip(), creds.basic):
                return Verdict(True, None, claimed)
            problems.append(
                "the Basic credentials do not match"
                if creds.basic is not None
                else f"Basic credentials came but {env_name('status', 'basic_username_file')} is not set"
            )
        if self.open:
            return Verdict(True, None, claimed)
        if not creds.schemes():
            return Verdict(False, None, claimed, _NO_CREDENTIAL_HINT)
        problem = "; ".join(problems) or f"no credential presented (accepted here: {', '.join(creds.schemes())})"
        return Verdict(False, None, claimed, problem)

    def log_refusal(self, verdict: Verdict, url: str) -> None:
        """One warning per minute per kind of refusal, with what to change."""
        kind = "mismatch" if self.credentials.schemes() else "none"
        hint = self._hints.setdefault(kind, _Hint())
        if not hint.due(self.monotonic()):
            return
        more = hint.take_suppressed()
        also = f" ({more} more refused since the last such line)" if more else ""
        if kind == "none":
            logger.warning("/status refused a callback with 401: %s%s", _NO_CREDENTIAL_HINT, also)
        else:
            logger.warning("/status refused a callback to %s with 401: %s%s", url[:300], verdict.problem, also)


_NO_CREDENTIAL_HINT: Final = (
    "no status credential is configured; set SGW_STATUS__TWILIO_AUTH_TOKEN_FILE, "
    "SGW_STATUS__SIGNALWIRE_SIGNING_KEY_FILE, SGW_STATUS__TELNYX_PUBLIC_KEY_FILE, "
    "SGW_STATUS__PLIVO_AUTH_TOKEN_FILE, SGW_STATUS__BEARER_TOKEN_FILE or SGW_STATUS__BASIC_*_FILE "
    "(or SGW_STATUS__ALLOW_UNAUTHENTICATED=true)"
)


def _mismatch(header: str, keys: tuple[object, ...], setting: str) -> str:
    if not keys:
        return f"{header} came but {env_name('status', setting)} is not set"
    return f"{header} does not verify (is {env_name('status', 'public_base_url')} the URL the provider calls?)"


def _basic_matches(value: str, expected: tuple[bytes, bytes]) -> bool:
    try:
        user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        return False
    if not sep:
        return False
    # Both compared, always: no early exit that tells a right user name from a wrong one.
    return hmac.compare_digest(_digest(user), expected[0]) & hmac.compare_digest(_digest(password), expected[1])

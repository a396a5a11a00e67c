"""Stream authentication, sans-IO: what an upgrade request presents, checked against a route.

At the upgrade the shell reads the request's credentials once into an immutable
:class:`Credentials` (:func:`read_credentials`). A bearer token (``Authorization: Bearer <token>``:
SignalWire, Vonage's custom ``authorization``; or Telnyx's ``X-Telnyx-Streaming-Auth-Token``
header, which carries ``stream_auth_token`` as is) and HTTP Basic credentials (Exotel, jambonz,
Bandwidth) are reduced to their SHA-256 at once, so no token or password outlives the upgrade
callback. A Twilio ``X-Twilio-Signature`` is kept with the URL(s) it must cover: the public
``wss://`` URL the provider connected to, rebuilt from ``websocket.public_url`` (when a proxy
rewrites the host or path) or the ``Host`` header, followed by the request target as received,
query included; like Twilio's own validators, the URL is tried with and without its default port.

:func:`accepts` checks them against a route's stored forms (``sgw_routes.credentials``), every
comparison constant-time. A route with several kinds accepts a stream that satisfies ANY one of
them: each provider can send only its own kind (Twilio cannot send a bearer token, SignalWire
cannot sign), so one route may serve SignalWire's bearer token and Twilio's signature; requiring
all would admit nobody. Each kind alone must therefore be strong enough for the route.

Nothing here logs, and ``repr`` shows only which kinds were presented.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from sgw_routes.credentials import hash_bytes, is_twilio_key, twilio_signature
from sgw_routes.model import Route

TELNYX_TOKEN_HEADER: Final = "X-Telnyx-Streaming-Auth-Token"
"""Where Telnyx sends a stream's ``stream_auth_token`` on the upgrade (verbatim, no scheme)."""
TWILIO_SIGNATURE_HEADER: Final = "X-Twilio-Signature"
REALM: Final = "stream-gateway"
FAILURE_KINDS: Final = ("none", "bearer", "basic", "twilio_signature", "multiple")
"""``kind`` label of ``sgw_auth_failures_total``: what the refused request presented."""
_DEFAULT_PORTS: Final = {"wss": "443", "https": "443", "ws": "80", "http": "80"}
_CHALLENGES: Final = {
    "bearer": f'Bearer realm="{REALM}"',
    "basic": f'Basic realm="{REALM}", charset="UTF-8"',
    "twilio_signature": f'TwilioSignature realm="{REALM}"',
}

Header = Callable[[str], "str | None"]
"""A case-insensitive header lookup of the upgrade request (first value, or None)."""


@dataclass(frozen=True, slots=True, repr=False)
class Credentials:
    """What one upgrade request presented, captured once; only digests of secrets are kept."""

    bearer_sha256: str | None = None
    """SHA-256 of the bearer token (raw header bytes)."""
    basic_sha256: str | None = None
    """SHA-256 of ``username:password``; ``""`` for a Basic header that does not decode to one."""
    twilio_signature: bytes | None = None
    signed_urls: tuple[str, ...] = ()
    """The URLs a Twilio signature may cover (empty: no host to rebuild one from)."""

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of credential presented, in a fixed order."""
        found = []
        if self.bearer_sha256 is not None:
            found.append("bearer")
        if self.basic_sha256 is not None:
            found.append("basic")
        if self.twilio_signature is not None:
            found.append("twilio_signature")
        return tuple(found)

    @property
    def failure(self) -> tuple[str, str]:
        """``(reason, kind)`` labels of ``sgw_auth_failures_total`` if this request is refused:
        ``missing`` when it presented nothing, else ``invalid`` and what it presented."""
        kinds = self.kinds
        if not kinds:
            return "missing", "none"
        return "invalid", kinds[0] if len(kinds) == 1 else "multiple"

    def __repr__(self) -> str:
        return f"Credentials(kinds={self.kinds})"


NO_CREDENTIALS: Final = Credentials()


def _raw(value: str) -> bytes:
    """The header's bytes as received (the HTTP parser decoded them as ASCII + surrogateescape)."""
    return value.encode("utf-8", "surrogateescape")


def _basic(value: str) -> str:
    """SHA-256 of the decoded ``user:password``, or ``""`` when it is not one."""
    try:
        decoded = base64.b64decode(_raw(value), validate=True)
    except (binascii.Error, ValueError):
        return ""
    return hash_bytes(decoded) if b":" in decoded else ""


def read_credentials(header: Header, target: str, public_url: str = "") -> Credentials:
    """Every credential the upgrade request carries. ``target`` is the request target as received
    (path and query); ``public_url`` the configured public base URL (empty: use ``Host``)."""
    scheme, _, value = (header("Authorization") or "").strip().partition(" ")
    value = value.strip()
    scheme = scheme.lower()
    bearer = hash_bytes(_raw(value)) if scheme == "bearer" and value else None
    basic = _basic(value) if scheme == "basic" and value else None
    if bearer is None:
        telnyx = (header(TELNYX_TOKEN_HEADER) or "").strip()
        if telnyx:
            bearer = hash_bytes(_raw(telnyx))
    signature = (header(TWILIO_SIGNATURE_HEADER) or "").strip()
    if not signature:
        return Credentials(bearer_sha256=bearer, basic_sha256=basic)
    return Credentials(
        bearer_sha256=bearer,
        basic_sha256=basic,
        twilio_signature=_raw(signature),
        signed_urls=signed_urls(header("Host"), target, public_url),
    )


def signed_urls(host: str | None, target: str, public_url: str = "") -> tuple[str, ...]:
    """The URL(s) the provider connected to: the public base (or ``wss://`` + ``Host``) followed by
    the request target, then the same URL with its default port added or removed."""
    if "://" in target:  # absolute-form request target: it is the URL
        url = target
    elif public_url:
        url = public_url.rstrip("/") + target
    elif host and host.strip():
        url = f"wss://{host.strip()}{target}"
    else:
        return ()
    return (url, *_port_variant(url))


def _port_variant(url: str) -> tuple[str, ...]:
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    netloc = parts.netloc
    if default is None or not netloc or "@" in netloc:
        return ()
    host, colon, port = netloc.rpartition(":")
    has_port = bool(colon) and port.isdigit() and not netloc.endswith("]")
    if has_port and port == default:
        variant = host
    elif not has_port:
        variant = f"{netloc}:{default}"
    else:
        return ()
    start = len(parts.scheme) + 3
    return (url[:start] + variant + url[start + len(netloc) :],)


def _same(presented: str | None, stored: str | None) -> bool:
    if presented is None or stored is None:
        return False
    return hmac.compare_digest(presented.encode(), stored.encode())


def accepts(route: Route, credentials: Credentials) -> bool:
    """Whether ``credentials`` satisfy ``route``: an open route takes anything, else any one of
    the route's kinds must verify."""
    if not route.requires_auth:
        return True
    ok = _same(credentials.bearer_sha256, route.token_sha256)
    ok |= _same(credentials.basic_sha256, route.basic_sha256)
    key, signature = route.twilio_key, credentials.twilio_signature
    if key is not None and signature is not None and is_twilio_key(key):
        for url in credentials.signed_urls:
            ok |= hmac.compare_digest(twilio_signature(key, url).encode(), signature)
    return ok


def candidates_accept(routes: Iterable[Route], credentials: Credentials) -> bool:
    """Upgrade-time check with the route key in the path: could any route the key may resolve to
    accept these credentials? (No candidate: the stream is refused at ``start`` for want of a route.)"""
    found = False
    for route in routes:
        found = True
        if accepts(route, credentials):
            return True
    return not found


def challenge(routes: Iterable[Route]) -> str:
    """``WWW-Authenticate`` for a 401: one challenge per kind the candidate routes accept."""
    kinds = dict.fromkeys(kind for route in routes for kind in route.auth_kinds)
    return ", ".join(_CHALLENGES[kind] for kind in kinds) or _CHALLENGES["bearer"]

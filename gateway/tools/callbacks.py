"""The simulator's status callbacks: each provider's own request, signed the way the provider signs.

:func:`signed_request` is pure: the URL, headers and body of one callback, with the credential
given (:class:`CallbackAuth`): Twilio's ``X-Twilio-Signature`` (HMAC-SHA1 of URL and form
fields), SignalWire's ``X-SignalWire-Signature`` (hex HMAC-SHA1 of URL and JSON body, or Twilio's
scheme for a cXML form), Telnyx's Ed25519 ``telnyx-signature-ed25519`` over ``timestamp|body``,
Plivo's ``X-Plivo-Signature-V3`` with a nonce; and, for any provider, a bearer token or HTTP
Basic (Bandwidth's ``username``/``password``). The schemes themselves are
:mod:`gateway.protocol.signatures`, the one definition the gateway checks them with.
:func:`post` sends one.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from gateway.protocol import signatures
from gateway.tools.providers import StatusCallback

_TIMEOUT: Final = aiohttp.ClientTimeout(total=10)
SIGNING_PROVIDERS: Final = frozenset(("twilio", "signalwire", "telnyx", "plivo"))


@dataclass(frozen=True, slots=True)
class CallbackAuth:
    token: str | None = None
    """``Authorization: Bearer``."""
    basic: str | None = None
    """``user:password`` for HTTP Basic."""
    signing_key: str | None = None
    """The provider's signing secret: Twilio's Auth Token, SignalWire's Signing Key, Plivo's Auth
    Token, or Telnyx's Ed25519 private key (base64 of its 32-byte seed, or of seed + public key)."""


@dataclass(frozen=True, slots=True)
class SignedRequest:
    url: str
    headers: dict[str, str]
    body: bytes


def ed25519_seed(text: str) -> bytes:
    """A Telnyx signing key as given on the command line: base64 (or hex) of the 32-byte seed, or of
    the 64-byte seed + public key. ValueError for anything else."""
    text = text.strip()
    try:
        raw = bytes.fromhex(text) if len(text) in (64, 128) else base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the Telnyx signing key is not base64 or hex") from None
    if len(raw) not in (32, 64):
        raise ValueError(f"an Ed25519 private key is 32 bytes (or 64 with its public half), this is {len(raw)}")
    return raw[:32]


def signed_request(provider: str, url: str, callback: StatusCallback, auth: CallbackAuth, now: float) -> SignedRequest:
    """The request ``provider`` makes for ``callback`` (the URL may gain Twilio's ``bodySHA256``)."""
    body = callback.body()
    headers: dict[str, str] = {"Content-Type": callback.content_type}
    if auth.token:
        headers["Authorization"] = f"Bearer {auth.token}"
    elif auth.basic:
        headers["Authorization"] = "Basic " + base64.b64encode(auth.basic.encode()).decode()
    key = auth.signing_key
    if not key or provider not in SIGNING_PROVIDERS:
        return SignedRequest(url, headers, body)
    form = sorted((callback.form or {}).items())
    if provider == "telnyx":
        stamp = str(int(now))
        headers["telnyx-timestamp"] = stamp
        headers["telnyx-signature-ed25519"] = signatures.telnyx_signature(ed25519_seed(key), stamp, body)
    elif provider == "plivo":
        nonce = secrets.token_hex(10)
        headers["X-Plivo-Signature-V3-Nonce"] = nonce
        headers["X-Plivo-Signature-V3"] = signatures.plivo_v3_signature(key, "POST", url, form, nonce)
    elif provider == "signalwire" and callback.json is not None:
        headers["X-SignalWire-Signature"] = signatures.signalwire_json_signature(key, url, body)
    else:
        if callback.json is not None:  # Twilio signs a JSON body through a bodySHA256 query parameter
            url = _with_query(url, "bodySHA256", signatures.body_sha256(body))
            form = []
        header = "X-SignalWire-Signature" if provider == "signalwire" else "X-Twilio-Signature"
        headers[header] = signatures.twilio_signature(key, url, form)
    return SignedRequest(url, headers, body)


def _with_query(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = [*parse_qsl(parts.query, keep_blank_values=True), (name, value)]
    return urlunsplit(parts._replace(query=urlencode(query)))


async def post(session: aiohttp.ClientSession, request: SignedRequest) -> int:
    """POST one callback; the HTTP status (the body is read and discarded)."""
    async with session.post(request.url, data=request.body, headers=request.headers, timeout=_TIMEOUT) as response:
        await response.read()
        return response.status

"""How each provider signs its HTTP callbacks: computing and checking the signatures, sans-IO.

Pure functions over the pieces of one request (its method, the public URL the provider called,
the raw body, the form parameters, header values) and the provider's secret. No clock (the caller
passes ``now``), no files, no logging. The gateway checks callbacks with them
(:mod:`gateway.transport.status_auth`) and the simulator signs with them, so both sides share one
definition of each scheme:

- **Twilio** ``X-Twilio-Signature``: base64 HMAC-SHA1, keyed with the account's Auth Token, of
  the full URL followed by the POST form parameters sorted by name, each written as name + value.
  A GET carries its parameters in the URL, so the URL alone is signed; a JSON body is covered by
  a ``bodySHA256`` query parameter (hex SHA-256 of the body) and the URL alone is signed. Twilio's
  own validators accept the URL with and without its port, and so do we (:func:`url_variants`).
- **SignalWire** ``X-SignalWire-Signature``, keyed with the project's Signing Key: SWML / RELAY
  JSON callbacks carry lower-case hex HMAC-SHA1 of the URL followed by the raw body; cXML form
  callbacks (and SignalWire's ``X-Twilio-Signature`` alias) use the Twilio scheme above.
- **Telnyx** ``telnyx-signature-ed25519``: base64 Ed25519 signature of ``<telnyx-timestamp>|<raw
  body>``, checked with the account's public key; the timestamp (Unix seconds) must be recent.
- **Plivo** ``X-Plivo-Signature-V3`` with ``X-Plivo-Signature-V3-Nonce``: base64 HMAC-SHA256,
  keyed with the Auth Token, of ``<url>.<nonce>`` where the URL is rebuilt with its query
  parameters sorted (``k=v&...``) and, for a POST with form parameters, followed by ``?``, the
  query and a ``.`` when there is one, then the sorted parameters as name + value. The header may
  list several signatures (one per active token), comma-separated.

Every comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import nacl.exceptions
import nacl.signing

Params = Sequence[tuple[str, str]]
"""Form parameters in the order received (a name may repeat)."""

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_SPKI_ED25519_PREFIX: Final = bytes.fromhex("302a300506032b6570032100")
"""DER header of an Ed25519 SubjectPublicKeyInfo: what a PEM ``PUBLIC KEY`` block holds before the 32 key bytes."""


def _grouped(params: Iterable[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    by_name: dict[str, list[str]] = {}
    for name, value in params:
        by_name.setdefault(name, []).append(value)
    return [(name, sorted(by_name[name])) for name in sorted(by_name)]


def _b64_hmac(key: str, message: bytes, digest: str) -> str:
    return base64.b64encode(hmac.new(key.encode(), message, digest).digest()).decode()


def _equal(expected: str, presented: str) -> bool:
    return hmac.compare_digest(expected.encode(), presented.encode())


# -- Twilio (and SignalWire's cXML / compatibility callbacks) ---------------------------------


def twilio_payload(url: str, params: Params = ()) -> str:
    """The signed string: the URL, then each parameter name + value, sorted by name then value
    (a name and value repeated verbatim counts once, as Twilio's validators count it)."""
    return url + "".join(name + value for name, values in _grouped(params) for value in dict.fromkeys(values))


def twilio_signature(key: str, url: str, params: Params = ()) -> str:
    """The ``X-Twilio-Signature`` of a request to ``url`` with these POST form parameters."""
    return _b64_hmac(key, twilio_payload(url, params).encode(), "sha1")


def body_sha256(body: bytes) -> str:
    """Hex SHA-256 of a JSON body: the ``bodySHA256`` query parameter Twilio adds when it signs one."""
    return hashlib.sha256(body).hexdigest()


def url_variants(url: str) -> tuple[str, ...]:
    """The URL as called, without its port, and with the scheme's default port: a proxy in front
    of the gateway may add or drop the port, and the provider signed only one of them."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    without = urlunsplit(parts._replace(netloc=prefix + host))
    out = [url, without]
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None and parts.scheme in _DEFAULT_PORTS:
        out.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{_DEFAULT_PORTS[parts.scheme]}")))
    return tuple(dict.fromkeys(out))


def check_twilio(
    keys: Sequence[str], signature: str, url: str, *, method: str, params: Params, body: bytes, json_body: bool
) -> bool:
    """Whether ``signature`` (an ``X-Twilio-Signature``) signs this request with one of ``keys``."""
    if not signature or not keys:
        return False
    signed_params: Params = ()
    if json_body:
        presented = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True)).get("bodySHA256")
        if presented is None or not _equal(body_sha256(body), presented.lower()):
            return False
    elif method.upper() == "POST":
        signed_params = params
    suffix = "".join(name + value for name, values in _grouped(signed_params) for value in dict.fromkeys(values))
    found = False
    for candidate in url_variants(url):
        message = (candidate + suffix).encode()
        for key in keys:
            found |= _equal(_b64_hmac(key, message, "sha1"), signature)
    return found


# -- SignalWire SWML / RELAY JSON callbacks ---------------------------------------------------


def signalwire_json_signature(key: str, url: str, body: bytes) -> str:
    """The ``X-SignalWire-Signature`` of a JSON (SWML / RELAY) callback: hex HMAC-SHA1 of URL + body."""
    return hmac.new(key.encode(), url.encode() + body, "sha1").hexdigest()


def check_signalwire(
    keys: Sequence[str], signature: str, url: str, *, method: str, params: Params, body: bytes, json_body: bool
) -> bool:
    """An ``X-SignalWire-Signature``: the JSON scheme (URL + raw body, hex), else the cXML (Twilio) one."""
    if not signature or not keys:
        return False
    found = False
    for candidate in url_variants(url):
        for key in keys:
            found |= _equal(signalwire_json_signature(key, candidate, body), signature.lower())
    return found or check_twilio(keys, signature, url, method=method, params=params, body=body, json_body=json_body)


# -- Telnyx -----------------------------------------------------------------------------------


def telnyx_message(timestamp: str, body: bytes) -> bytes:
    """What Telnyx signs: the ``telnyx-timestamp`` header, ``|``, the raw body."""
    return timestamp.encode() + b"|" + body


def telnyx_signature(seed: bytes, timestamp: str, body: bytes) -> str:
    """Sign like Telnyx, with a 32-byte Ed25519 private key seed (for the simulator and tests)."""
    signed = nacl.signing.SigningKey(seed).sign(telnyx_message(timestamp, body))
    return base64.b64encode(signed.signature).decode()


def ed25519_public_key(text: str) -> bytes:
    """The 32 raw key bytes of a public key as Telnyx shows it (base64 of the raw key), or as base64
    DER / a PEM ``PUBLIC KEY`` block. Raises ValueError for anything else."""
    lines = [line.strip() for line in text.strip().splitlines()]
    if lines and lines[0].startswith("-----BEGIN"):
        lines = [line for line in lines if not line.startswith("-----")]
    try:
        raw = base64.b64decode("".join(lines), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not base64") from None
    if len(raw) == len(_SPKI_ED25519_PREFIX) + 32 and raw.startswith(_SPKI_ED25519_PREFIX):
        raw = raw[len(_SPKI_ED25519_PREFIX) :]
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this is {len(raw)}")
    return raw


def timestamp_fresh(timestamp: str, now: float, max_age: float) -> bool:
    """Whether a Unix-seconds timestamp lies within ``max_age`` seconds of ``now`` (either side)."""
    try:
        value = float(timestamp)
    except ValueError:
        return False
    return abs(now - value) <= max_age


def check_telnyx(keys: Sequence[bytes], signature: str, timestamp: str, body: bytes) -> bool:
    """Whether ``signature`` (base64) is an Ed25519 signature of ``timestamp|body`` by one of ``keys``
    (32 raw bytes each). The freshness of the timestamp is :func:`timestamp_fresh`'s business."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) != 64:
        return False
    message = telnyx_message(timestamp, body)
    for key in keys:
        try:
            nacl.signing.VerifyKey(key).verify(message, raw)
        except (nacl.exceptions.BadSignatureError, ValueError):
            continue
        return True
    return False


# -- Plivo ------------------------------------------------------------------------------------


def plivo_v3_payload(method: str, url: str, params: Params, nonce: str) -> str:
    """The string Plivo's V3 scheme signs (see the module docstring)."""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = "&".join(
        f"{name}={value}"
        for name, values in _grouped(parse_qsl(parts.query, keep_blank_values=True))
        for value in values
    )
    signed_params = params if method.upper() == "POST" else ()
    if signed_params:
        base += "?" + query + ("." if query else "")
        base += "".join(name + value for name, values in _grouped(signed_params) for value in values)
    elif query:
        base += "?" + query
    return f"{base}.{nonce}"


def plivo_v3_signature(key: str, method: str, url: str, params: Params, nonce: str) -> str:
    """An ``X-Plivo-Signature-V3`` value."""
    return _b64_hmac(key, plivo_v3_payload(method, url, params, nonce).encode(), "sha256")


def check_plivo(keys: Sequence[str], header: str, nonce: str, url: str, *, method: str, params: Params) -> bool:
    """Whether one of the comma-separated signatures in ``header`` signs this request with one of ``keys``."""
    if not header or not nonce or not keys:
        return False
    message = plivo_v3_payload(method, url, params, nonce).encode()
    presented = [s.strip() for s in header.split(",") if s.strip()]
    found = False
    for key in keys:
        expected = _b64_hmac(key, message, "sha256")
        for candidate in presented:
            found |= _equal(expected, candidate)
    return found

"""What a stream credential is reduced to before it leaves a Secret, and the Twilio signature.

The route table is published on NATS and read by every gateway, so it holds no credential, only
forms that check one:

- a bearer token: the hex SHA-256 of the token (``sgw_routes.model.hash_token``);
- HTTP Basic: the hex SHA-256 of ``username:password`` (:func:`hash_basic`);
- a Twilio auth token: its HMAC-SHA1 key schedule (:func:`twilio_key`), the two SHA-1 chaining
  values after the key's inner and outer pad blocks (RFC 2104 section 4 suggests keeping exactly
  these). They compute ``X-Twilio-Signature`` for any URL as the token would, but the token itself,
  which is also the Twilio account's API password, is neither stored nor published.

SHA-1 is written out here because ``hashlib`` cannot resume from a stored chaining value. It runs
only for an upgrade that presents a signature (a few 64-byte blocks), and the tests check it
against ``hashlib``/``hmac`` on random keys and messages.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Final

BASIC_USERNAME_KEY: Final = "username"
BASIC_PASSWORD_KEY: Final = "password"
"""The keys of a ``kubernetes.io/basic-auth`` Secret (file mode: ``DIR/<name>/username`` ...)."""

_BLOCK: Final = 64
_MASK: Final = 0xFFFFFFFF
_H0: Final = (0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0)
_IPAD: Final = bytes(0x36 for _ in range(_BLOCK))
_OPAD: Final = bytes(0x5C for _ in range(_BLOCK))
_KEY_HEX_LENGTH: Final = 80
"""Two chaining values of five 32-bit words, in hex."""

State = tuple[int, int, int, int, int]


def hash_bytes(data: bytes) -> str:
    """Hex SHA-256: how a presented credential is compared with a stored one (raw header bytes)."""
    return hashlib.sha256(data).hexdigest()


def hash_basic(username: str, password: str) -> str:
    """The stored form of Basic credentials: hex SHA-256 of ``username:password`` (UTF-8).

    A colon in the username would make two different pairs hash alike, and RFC 7617 forbids it.
    """
    if ":" in username:
        raise ValueError("a Basic auth username cannot contain ':'")
    return hash_bytes(f"{username}:{password}".encode())


def _compress(state: State, block: bytes) -> State:
    """One SHA-1 compression (FIPS 180-4 section 6.1.2) of a 64-byte block; a loop per round
    function rather than a branch per round (this runs at upgrade time, on untrusted input)."""
    w = list(struct.unpack(">16I", block))
    for t in range(16, 80):
        x = w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]
        w.append(((x << 1) | (x >> 31)) & _MASK)
    a, b, c, d, e = state
    for t in range(20):  # Ch(b, c, d)
        f = d ^ (b & (c ^ d))
        a, b, c, d, e = (((a << 5) | (a >> 27)) + f + e + 0x5A827999 + w[t]) & _MASK, a, _rotl30(b), c, d
    for t in range(20, 40):  # Parity
        f = b ^ c ^ d
        a, b, c, d, e = (((a << 5) | (a >> 27)) + f + e + 0x6ED9EBA1 + w[t]) & _MASK, a, _rotl30(b), c, d
    for t in range(40, 60):  # Maj(b, c, d)
        f = (b & c) | (d & (b | c))
        a, b, c, d, e = (((a << 5) | (a >> 27)) + f + e + 0x8F1BBCDC + w[t]) & _MASK, a, _rotl30(b), c, d
    for t in range(60, 80):  # Parity
        f = b ^ c ^ d
        a, b, c, d, e = (((a << 5) | (a >> 27)) + f + e + 0xCA62C1D6 + w[t]) & _MASK, a, _rotl30(b), c, d
    return (
        (state[0] + a) & _MASK,
        (state[1] + b) & _MASK,
        (state[2] + c) & _MASK,
        (state[3] + d) & _MASK,
        (state[4] + e) & _MASK,
    )


def _rotl30(x: int) -> int:
    return ((x << 30) | (x >> 2)) & _MASK


def _resume(state: State, data: bytes, done: int) -> bytes:
    """SHA-1 digest of ``done`` bytes already compressed into ``state``, followed by ``data``."""
    length = (done + len(data)) * 8
    padded = data + b"\x80" + bytes((55 - len(data)) % _BLOCK) + struct.pack(">Q", length)
    for offset in range(0, len(padded), _BLOCK):
        state = _compress(state, padded[offset : offset + _BLOCK])
    return struct.pack(">5I", *state)


def twilio_key(auth_token: str) -> str:
    """The stored form of a Twilio auth token: hex of the HMAC-SHA1 inner and outer pad states."""
    key = auth_token.encode()
    if len(key) > _BLOCK:
        key = hashlib.sha1(key).digest()  # noqa: S324 - HMAC-SHA1 is Twilio's scheme, not our choice
    key = key.ljust(_BLOCK, b"\0")
    inner = _compress(_H0, bytes(k ^ p for k, p in zip(key, _IPAD, strict=True)))
    outer = _compress(_H0, bytes(k ^ p for k, p in zip(key, _OPAD, strict=True)))
    return struct.pack(">10I", *inner, *outer).hex()


def is_twilio_key(value: str) -> bool:
    return len(value) == _KEY_HEX_LENGTH and all(c in "0123456789abcdef" for c in value)


def twilio_signature(key: str, url: str) -> str:
    """``X-Twilio-Signature`` for ``url``: base64 HMAC-SHA1 under the token ``key`` stands for.

    A WebSocket upgrade carries no form parameters, so the signed data is the URL alone.
    """
    a, b, c, d, e, f, g, h, i, j = struct.unpack(">10I", bytes.fromhex(key))
    message = url.encode("utf-8", "surrogateescape")  # header bytes as received, see gateway.protocol.auth
    digest = _resume((f, g, h, i, j), _resume((a, b, c, d, e), message, _BLOCK), _BLOCK)
    return base64.b64encode(digest).decode()

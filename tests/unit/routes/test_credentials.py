"""Stored forms of credentials: the Twilio HMAC key schedule against hashlib/hmac, Basic hashing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import random

import pytest

from sgw_routes.credentials import hash_basic, hash_bytes, is_twilio_key, twilio_key, twilio_signature

# Twilio's webhook-security documentation example: auth token 12345, this URL and these POST
# parameters, signed as the URL followed by each parameter name and value, sorted by name.
DOC_TOKEN = "12345"
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
DOC_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def reference(token: str, data: str) -> str:
    """The signature computed the obvious way, with the standard library."""
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


def test_twilio_documented_example() -> None:
    data = DOC_URL + "".join(name + DOC_PARAMS[name] for name in sorted(DOC_PARAMS))
    assert reference(DOC_TOKEN, data) == DOC_SIGNATURE  # the example as published
    assert twilio_signature(twilio_key(DOC_TOKEN), data) == DOC_SIGNATURE


def test_websocket_url_signature_known_answer() -> None:
    """A stream upgrade carries no parameters: the signed data is the wss URL, query included."""
    url = "wss://mycompany.com/stream/sales-7?foo=1&bar=2"
    assert twilio_signature(twilio_key(DOC_TOKEN), url) == reference(DOC_TOKEN, url)
    assert twilio_signature(twilio_key(DOC_TOKEN), url) != twilio_signature(twilio_key(DOC_TOKEN), url + "&x=1")


@pytest.mark.parametrize("seed", range(5))
def test_key_schedule_matches_hmac_for_every_length(seed: int) -> None:
    """Keys shorter than, equal to and longer than a block (hashed first), messages that end on
    every padding boundary (55, 56, 64 bytes ...), non-ASCII text."""
    rng = random.Random(seed)
    alphabet = "abcXYZ019-_/?=&:é✓"
    for key_len in (0, 1, 32, 63, 64, 65, 200):
        token = "".join(rng.choice(alphabet) for _ in range(key_len))
        key = twilio_key(token)
        assert is_twilio_key(key) and (len(token) < 8 or token not in key)
        for msg_len in (0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 128, 300):
            url = "".join(rng.choice(alphabet) for _ in range(msg_len))
            assert twilio_signature(key, url) == reference(token, url), (key_len, msg_len)


def test_key_schedule_is_not_the_token_and_is_stable() -> None:
    key = twilio_key("f" * 32)
    assert len(key) == 80 and key == twilio_key("f" * 32) != twilio_key("f" * 31 + "e")
    assert "f" * 32 not in key
    assert not is_twilio_key("xyz") and not is_twilio_key(key.upper()) and not is_twilio_key(key[:-2])


def test_basic_hash_is_of_user_colon_password() -> None:
    assert hash_basic("user", "p:ss word") == hash_bytes(b"user:p:ss word")
    assert hash_basic("üser", "pässword") == hash_bytes("üser:pässword".encode())
    with pytest.raises(ValueError, match="cannot contain ':'"):
        hash_basic("us:er", "x")

"""Stream authentication (sans-IO): reading an upgrade's credentials, checking them against routes."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from multidict import CIMultiDict

from gateway.protocol.auth import (
    NO_CREDENTIALS,
    TELNYX_TOKEN_HEADER,
    Credentials,
    accepts,
    candidates_accept,
    challenge,
    read_credentials,
    signed_urls,
)
from sgw_routes.credentials import hash_basic, twilio_key
from sgw_routes.model import NO_BEARER_TOKEN, Route, hash_token

TOKEN = "bearer-t0ken-of-the-route"
USER, PASSWORD = "exotel-api-key", "exotel-api-t0ken"
TWILIO_TOKEN = "0123456789abcdef0123456789abcdef"

BEARER = Route(name="bearer", token_sha256=hash_token(TOKEN))
BASIC = Route(name="basic", token_sha256=NO_BEARER_TOKEN, basic_sha256=hash_basic(USER, PASSWORD))
TWILIO = Route(name="twilio", token_sha256=NO_BEARER_TOKEN, twilio_key=twilio_key(TWILIO_TOKEN))
ANY_OF = Route(name="any", token_sha256=hash_token(TOKEN), twilio_key=twilio_key(TWILIO_TOKEN))
OPEN = Route(name="open")


def sign(url: str, token: str = TWILIO_TOKEN) -> str:
    """Twilio's scheme, computed independently: base64 HMAC-SHA1 of the URL under the auth token."""
    return base64.b64encode(hmac.new(token.encode(), url.encode(), hashlib.sha1).digest()).decode()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def creds(target: str = "/stream/k", public_url: str = "", **headers: str) -> Credentials:
    h: CIMultiDict[str] = CIMultiDict({k.replace("_", "-"): v for k, v in headers.items()})
    return read_credentials(h.get, target, public_url)


# ---- each kind --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ({"Authorization": f"Bearer {TOKEN}"}, True),
        ({"authorization": f"bearer   {TOKEN}  "}, True),  # scheme is case-insensitive, spaces trimmed
        ({TELNYX_TOKEN_HEADER: TOKEN}, True),  # Telnyx stream_auth_token, verbatim
        ({TELNYX_TOKEN_HEADER.lower(): f" {TOKEN}"}, True),
        ({"Authorization": f"Bearer {TOKEN}x"}, False),
        ({"Authorization": f"Basic {TOKEN}"}, False),
        ({"Authorization": TOKEN}, False),  # no scheme
        ({"Authorization": "Bearer "}, False),
        ({}, False),
    ],
)
def test_bearer(headers: dict[str, str], ok: bool) -> None:
    assert accepts(BEARER, creds(**headers)) is ok


@pytest.mark.parametrize(
    ("authorization", "ok"),
    [
        (basic(USER, PASSWORD), True),
        ("basic " + basic(USER, PASSWORD)[6:], True),
        (basic(USER, PASSWORD + "x"), False),
        (basic(USER + "x", PASSWORD), False),
        (basic(USER, ""), False),
        ("Basic " + base64.b64encode(f"{USER}{PASSWORD}".encode()).decode(), False),  # no colon
        ("Basic !!!not-base64", False),
        (f"Bearer {PASSWORD}", False),
    ],
)
def test_basic(authorization: str, ok: bool) -> None:
    assert accepts(BASIC, creds(Authorization=authorization)) is ok


def test_basic_password_with_colons_and_non_ascii() -> None:
    route = Route(name="b", basic_sha256=hash_basic("jambonz", "pä:ss:wörd"))
    assert accepts(route, creds(Authorization=basic("jambonz", "pä:ss:wörd")))


@pytest.mark.parametrize(
    ("url", "host", "public_url", "target"),
    [
        ("wss://gw.example.com/stream/sales?x=1&y=2", "gw.example.com", "", "/stream/sales?x=1&y=2"),
        ("wss://gw.example.com:8443/stream", "gw.example.com:8443", "", "/stream"),
        # Twilio signed without the port, the request carries it (and the other way round).
        ("wss://gw.example.com/stream", "gw.example.com:443", "", "/stream"),
        ("wss://gw.example.com:443/stream", "gw.example.com", "", "/stream"),
        # A proxy rewrote Host and stripped a prefix: websocket.public_url says what Twilio saw.
        ("wss://public.example.com/voice/stream/k", "gateway.svc:8080", "wss://public.example.com/voice", "/stream/k"),
        ("wss://public.example.com/voice/stream/k", "gateway.svc:8080", "wss://public.example.com/voice/", "/stream/k"),
    ],
)
def test_twilio_signature_over_the_url_the_provider_connected_to(
    url: str, host: str, public_url: str, target: str
) -> None:
    good = creds(target, public_url, Host=host, X_Twilio_Signature=sign(url))
    assert accepts(TWILIO, good)
    lowercase = creds(target, public_url, host=host, **{"x-twilio-signature": sign(url)})
    assert accepts(TWILIO, lowercase)


@pytest.mark.parametrize(
    ("signature", "host", "target"),
    [
        (sign("wss://gw.example.com/stream/sales", "another-account-token"), "gw.example.com", "/stream/sales"),
        (sign("wss://gw.example.com/stream/sales"), "gw.example.com", "/stream/sales?extra=1"),  # query is signed
        (sign("wss://gw.example.com/stream/sales"), "evil.example.com", "/stream/sales"),
        (sign("https://gw.example.com/stream/sales"), "gw.example.com", "/stream/sales"),  # wss, not https
        (sign("wss://gw.example.com/stream/sales"), "", "/stream/sales"),  # no Host: nothing to rebuild
        ("not base64 at all ✓", "gw.example.com", "/stream/sales"),
    ],
)
def test_twilio_signature_refused(signature: str, host: str, target: str) -> None:
    headers = {"X-Twilio-Signature": signature, **({"Host": host} if host else {})}
    assert not accepts(TWILIO, creds(target, **headers))


def test_a_route_whose_key_schedule_is_damaged_refuses_rather_than_crash() -> None:
    damaged = Route(name="t", token_sha256=NO_BEARER_TOKEN, twilio_key="not-a-key")
    assert not accepts(damaged, creds("/s", Host="h", X_Twilio_Signature=sign("wss://h/s")))


# ---- any-of, open routes, the bearer lock --------------------------------------------------------


def test_any_of_one_configured_kind_admits() -> None:
    """One route for SignalWire (bearer) and Twilio (signature): either credential is enough."""
    url = "wss://gw.example.com/stream/both"
    assert accepts(ANY_OF, creds("/stream/both", Authorization=f"Bearer {TOKEN}"))
    assert accepts(ANY_OF, creds("/stream/both", Host="gw.example.com", X_Twilio_Signature=sign(url)))
    # A valid credential of one kind admits even next to a wrong one of another (any-of, not all-of).
    both = creds("/stream/both", Host="gw.example.com", Authorization=f"Bearer {TOKEN}", X_Twilio_Signature="bad")
    assert accepts(ANY_OF, both)
    assert not accepts(ANY_OF, creds("/stream/both", Authorization="Bearer wrong", Host="gw.example.com"))


def test_a_valid_credential_of_a_kind_the_route_does_not_take_is_refused() -> None:
    assert not accepts(ANY_OF, creds(Authorization=basic(USER, PASSWORD)))
    assert not accepts(BASIC, creds(Authorization=f"Bearer {TOKEN}"))
    # The bearer lock of a route without a bearer kind: no token (not even the marker itself) matches it.
    assert not accepts(BASIC, creds(Authorization=f"Bearer {NO_BEARER_TOKEN}"))
    assert not accepts(TWILIO, creds(**{TELNYX_TOKEN_HEADER: NO_BEARER_TOKEN}))


def test_open_routes_take_anything() -> None:
    assert accepts(OPEN, NO_CREDENTIALS)
    assert accepts(OPEN, creds(Authorization="Bearer whatever"))


def test_candidates_at_the_upgrade() -> None:
    assert candidates_accept([], NO_CREDENTIALS)  # no route: refused later, at start, for want of one
    assert candidates_accept([BEARER, BASIC], creds(Authorization=basic(USER, PASSWORD)))
    assert not candidates_accept([BEARER, BASIC], creds(Authorization="Bearer wrong"))
    assert candidates_accept([BEARER, OPEN], NO_CREDENTIALS)


def test_challenges_name_the_kinds_the_candidates_take() -> None:
    assert challenge([BEARER]) == 'Bearer realm="stream-gateway"'
    assert challenge([BASIC, BEARER, BASIC]) == (
        'Basic realm="stream-gateway", charset="UTF-8", Bearer realm="stream-gateway"'
    )
    assert challenge([TWILIO]) == 'TwilioSignature realm="stream-gateway"'


# ---- what is kept, and what the metrics say -------------------------------------------------------


def test_credentials_keep_digests_only_and_never_show_them() -> None:
    c = creds(Authorization=f"Bearer {TOKEN}")
    assert c.bearer_sha256 == hash_token(TOKEN)
    b = creds(Authorization=basic(USER, PASSWORD))
    assert b.basic_sha256 == hash_basic(USER, PASSWORD)
    for held in (c, b):
        text = repr(held) + str(held)
        assert TOKEN not in text and PASSWORD not in text and "sha" not in text
        with pytest.raises(AttributeError):
            held.__dict__  # noqa: B018 - slots: nothing else is kept on the object


@pytest.mark.parametrize(
    ("headers", "labels"),
    [
        ({}, ("missing", "none")),
        ({"Authorization": "Bearer x"}, ("invalid", "bearer")),
        ({TELNYX_TOKEN_HEADER: "x"}, ("invalid", "bearer")),
        ({"Authorization": "Basic eDp5"}, ("invalid", "basic")),
        ({"Authorization": "Basic ???"}, ("invalid", "basic")),
        ({"X-Twilio-Signature": "x", "Host": "h"}, ("invalid", "twilio_signature")),
        ({"Authorization": "Bearer x", "X-Twilio-Signature": "x"}, ("invalid", "multiple")),
        ({"Authorization": "Digest x"}, ("missing", "none")),  # a scheme no route takes presents nothing
    ],
)
def test_failure_labels_are_bounded(headers: dict[str, str], labels: tuple[str, str]) -> None:
    h: CIMultiDict[str] = CIMultiDict(headers)
    assert read_credentials(h.get, "/stream").failure == labels


def test_raw_header_bytes_are_hashed_as_received() -> None:
    """The HTTP parser hands non-ASCII header bytes over as surrogate escapes: hashing must neither
    crash on them nor mangle them (a token with UTF-8 in it still matches its Secret)."""
    raw = "tök€n".encode().decode("ascii", "surrogateescape")
    route = Route(name="u", token_sha256=hash_token("tök€n"))
    assert accepts(route, creds(Authorization=f"Bearer {raw}"))
    latin1 = b"\xff\xfe".decode("ascii", "surrogateescape")
    assert not accepts(route, creds(Authorization=f"Bearer {latin1}"))
    assert not accepts(TWILIO, creds("/s", Host="h", X_Twilio_Signature=latin1))


def test_signed_urls() -> None:
    assert signed_urls("gw", "/stream") == ("wss://gw/stream", "wss://gw:443/stream")
    assert signed_urls("gw:443", "/s?a=b") == ("wss://gw:443/s?a=b", "wss://gw/s?a=b")
    assert signed_urls("gw:8443", "/s") == ("wss://gw:8443/s",)
    assert signed_urls("[::1]", "/s") == ("wss://[::1]/s", "wss://[::1]:443/s")
    assert signed_urls(None, "/s") == ()
    assert signed_urls("ignored", "/s", "ws://local:80") == ("ws://local:80/s", "ws://local/s")
    assert signed_urls("gw", "wss://abs.example/s") == ("wss://abs.example/s", "wss://abs.example:443/s")

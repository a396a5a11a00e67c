"""Each provider's callback signature scheme, against known answers.

Twilio's come from its own validator's test suite (Auth Token ``12345``); every other expected value
is computed here from the scheme's definition with ``hmac``/``hashlib``/PyNaCl directly, never
with the module under test, so a mistake in the module cannot hide in its own expectation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import nacl.signing
import pytest

from gateway.protocol import signatures as sig

TOKEN = "12345"
URI = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = [
    ("CallSid", "CA1234567890ABCDE"),
    ("Digits", "1234"),
    ("From", "+14158675309"),
    ("To", "+18005551212"),
    ("Caller", "+14158675309"),
]
JSON_BODY = b'{"property": "value", "boolean": true}'


def b64_hmac(key: str, message: str | bytes, digest: str) -> str:
    data = message.encode() if isinstance(message, str) else message
    return base64.b64encode(hmac.new(key.encode(), data, digest).digest()).decode()


# -- Twilio -----------------------------------------------------------------------------------


def test_twilio_documented_vectors() -> None:
    assert sig.twilio_signature(TOKEN, URI, PARAMS) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    duplicated = [("Sid", "CA123"), ("SidAccount", "AC123"), ("Digits", "5678"), ("Digits", "1234")]
    assert sig.twilio_signature(TOKEN, URI, duplicated) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    assert sig.body_sha256(JSON_BODY) == "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"


def test_twilio_signature_is_url_then_sorted_name_value_pairs() -> None:
    payload = URI + "CallSidCA1234567890ABCDECaller+14158675309Digits1234From+14158675309To+18005551212"
    assert sig.twilio_signature(TOKEN, URI, PARAMS) == b64_hmac(TOKEN, payload, "sha1")


def check(
    signature: str, url: str = URI, *, method: str = "POST", params: sig.Params = PARAMS, json: bytes | None = None
) -> bool:
    """``json``: the request had this JSON body (else a form, or a GET)."""
    body = b"" if json is None else json
    return sig.check_twilio(
        [TOKEN], signature, url, method=method, params=params, body=body, json_body=json is not None
    )


def test_twilio_check_accepts_the_url_with_or_without_its_port() -> None:
    assert check("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert check("RSOYDt4T1cUTdK1PDd93/VVr8B8=", URI.replace(".com", ".com:1234"))  # a proxy added a port
    assert check("kvajT1Ptam85bY51eRf/AJRuM3w=")  # signed with :443
    assert check("0ZXoZLH/DfblKGATFgpif+LLRf4=", URI.replace("https", "http"))  # signed with :80
    assert check("Zmvh+3yNM1Phv2jhDCwEM3q5ebU=", URI.replace(".com", ".com:1234").replace("https", "http"))
    assert sig.url_variants("https://h:8443/s?x=1") == ("https://h:8443/s?x=1", "https://h/s?x=1")


def test_twilio_check_refuses_any_change() -> None:
    good = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert not check(good, URI.replace("foo=1", "foo=2"))
    assert not check(good, params=[*PARAMS[:-1], ("Caller", "+10000000000")])
    assert not check(good, params=[*PARAMS, ("StreamEvent", "stream-started")])
    assert not check("")
    assert not sig.check_twilio(["other"], good, URI, method="POST", params=PARAMS, body=b"", json_body=False)


def test_twilio_get_signs_the_url_alone() -> None:
    url = "https://gw.example.com/status?CallSid=CA1&StreamEvent=stream-stopped"
    signature = b64_hmac(TOKEN, url, "sha1")
    assert sig.check_twilio([TOKEN], signature, url, method="GET", params=(), body=b"", json_body=False)


def test_twilio_json_body_is_covered_by_body_sha256() -> None:
    url = URI + "&bodySHA256=" + hashlib.sha256(JSON_BODY).hexdigest()
    assert check("a9nBmqA0ju/hNViExpshrM61xv4=", url, params=(), json=JSON_BODY)  # Twilio's own vector
    assert not check("a9nBmqA0ju/hNViExpshrM61xv4=", url, params=(), json=JSON_BODY + b" ")
    # without bodySHA256 the body is not covered at all: refused
    assert not check(b64_hmac(TOKEN, URI, "sha1"), URI, params=(), json=JSON_BODY)


# -- SignalWire -------------------------------------------------------------------------------

SW_KEY = "PSKexample0123456789"
SW_URL = "https://gw.example.com/status"
SWML = b'{"event_type":"calling.call.stream","params":{"call_id":"c","control_id":"k","state":"streaming"}}'


def test_signalwire_json_is_hex_hmac_sha1_of_url_and_raw_body() -> None:
    expected = hmac.new(SW_KEY.encode(), SW_URL.encode() + SWML, hashlib.sha1).hexdigest()
    assert sig.signalwire_json_signature(SW_KEY, SW_URL, SWML) == expected
    kw = {"method": "POST", "params": (), "body": SWML, "json_body": True}
    assert sig.check_signalwire([SW_KEY], expected, SW_URL, **kw)  # type: ignore[arg-type]
    assert sig.check_signalwire([SW_KEY], expected.upper(), SW_URL, **kw)  # type: ignore[arg-type]
    assert not sig.check_signalwire(["wrong"], expected, SW_URL, **kw)  # type: ignore[arg-type]
    tampered = {**kw, "body": SWML.replace(b"streaming", b"finished")}
    assert not sig.check_signalwire([SW_KEY], expected, SW_URL, **tampered)  # type: ignore[arg-type]


def test_signalwire_cxml_form_uses_the_twilio_scheme() -> None:
    form = [("CallSid", "c-1"), ("StreamEvent", "stream-started"), ("AccountSid", "p-1")]
    expected = b64_hmac(SW_KEY, SW_URL + "AccountSidp-1CallSidc-1StreamEventstream-started", "sha1")
    assert sig.check_signalwire([SW_KEY], expected, SW_URL, method="POST", params=form, body=b"", json_body=False)


# -- Telnyx -----------------------------------------------------------------------------------


@pytest.fixture
def telnyx_key() -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(hashlib.sha256(b"test key seed").digest())


def test_telnyx_is_ed25519_over_timestamp_pipe_body(telnyx_key: nacl.signing.SigningKey) -> None:
    body = b'{"data":{"event_type":"streaming.started"}}'
    signature = base64.b64encode(telnyx_key.sign(b"1700000000|" + body).signature).decode()
    public = bytes(telnyx_key.verify_key)
    assert sig.check_telnyx([public], signature, "1700000000", body)
    assert sig.telnyx_signature(bytes(telnyx_key), "1700000000", body) == signature
    assert not sig.check_telnyx([public], signature, "1700000001", body)
    assert not sig.check_telnyx([public], signature, "1700000000", body + b"\n")
    other = bytes(nacl.signing.SigningKey(hashlib.sha256(b"other").digest()).verify_key)
    assert not sig.check_telnyx([other], signature, "1700000000", body)
    assert sig.check_telnyx([other, public], signature, "1700000000", body)  # a rotation: either key
    assert not sig.check_telnyx([public], "not base64!", "1700000000", body)
    assert not sig.check_telnyx([public], base64.b64encode(b"short").decode(), "1700000000", body)


def test_telnyx_timestamps_must_be_recent() -> None:
    assert sig.timestamp_fresh("1000", 1000.0, 300)
    assert sig.timestamp_fresh("700", 1000.0, 300)
    assert not sig.timestamp_fresh("699", 1000.0, 300)
    assert not sig.timestamp_fresh("1301", 1000.0, 300)  # from the future: a clock problem, refused too
    assert not sig.timestamp_fresh("", 1000.0, 300)
    assert not sig.timestamp_fresh("soon", 1000.0, 300)


def test_telnyx_public_key_forms(telnyx_key: nacl.signing.SigningKey) -> None:
    raw = bytes(telnyx_key.verify_key)
    der = bytes.fromhex("302a300506032b6570032100") + raw
    pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n"
    assert sig.ed25519_public_key(base64.b64encode(raw).decode()) == raw
    assert sig.ed25519_public_key(base64.b64encode(der).decode() + "\n") == raw
    assert sig.ed25519_public_key(pem) == raw
    for bad in ("", "not base64!", base64.b64encode(raw[:31]).decode(), base64.b64encode(b"x" * 44).decode()):
        with pytest.raises(ValueError, match="base64|32 bytes"):
            sig.ed25519_public_key(bad)


# -- Plivo ------------------------------------------------------------------------------------

PLIVO = "plivo-token"
FORM = [("StreamID", "s-1"), ("Event", "StartStream"), ("CallUUID", "c-1")]


@pytest.mark.parametrize(
    ("method", "url", "params", "signed"),
    [
        (
            "POST",
            "https://gw.example/status",
            FORM,
            "https://gw.example/status?CallUUIDc-1EventStartStreamStreamIDs-1.n1",
        ),
        (
            "POST",
            "https://gw.example/status?z=2&a=1",
            FORM,
            "https://gw.example/status?a=1&z=2.CallUUIDc-1EventStartStreamStreamIDs-1.n1",
        ),
        ("POST", "https://gw.example/status?b=1", (), "https://gw.example/status?b=1.n1"),
        (
            "GET",
            "https://gw.example/status?Event=StopStream&CallUUID=c-1",
            (),
            "https://gw.example/status?CallUUID=c-1&Event=StopStream.n1",
        ),
        ("GET", "https://gw.example/status", (), "https://gw.example/status.n1"),
    ],
)
def test_plivo_v3_signed_string(method: str, url: str, params: sig.Params, signed: str) -> None:
    assert sig.plivo_v3_payload(method, url, params, "n1") == signed
    expected = b64_hmac(PLIVO, signed, "sha256")
    assert sig.plivo_v3_signature(PLIVO, method, url, params, "n1") == expected
    assert sig.check_plivo([PLIVO], expected, "n1", url, method=method, params=params)
    assert sig.check_plivo([PLIVO], f"bm90IHRoaXM=,{expected}", "n1", url, method=method, params=params)
    assert not sig.check_plivo([PLIVO], expected, "n2", url, method=method, params=params)
    assert not sig.check_plivo(["other"], expected, "n1", url, method=method, params=params)
    assert not sig.check_plivo([PLIVO], expected, "", url, method=method, params=params)


def test_plivo_post_covers_its_form() -> None:
    url = "https://gw.example/status"
    good = sig.plivo_v3_signature(PLIVO, "POST", url, FORM, "n1")
    forged = [("StreamID", "s-1"), ("Event", "DroppedStream"), ("CallUUID", "c-1")]
    assert not sig.check_plivo([PLIVO], good, "n1", url, method="POST", params=forged)

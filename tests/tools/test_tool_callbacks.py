"""The simulator's status callbacks are signed the way each provider signs: every signature is
checked with the gateway's own verifier (gateway.protocol.signatures), and a wrong key fails."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl, urlsplit

import nacl.signing
import pytest

from gateway.audio import parse_codec
from gateway.protocol import signatures
from gateway.tools.callbacks import CallbackAuth, ed25519_seed, signed_request
from gateway.tools.providers import PROVIDERS, ProviderWire, StatusCallback, StreamSpec

URL = "http://127.0.0.1:9999/status?provider=x"
NOW = 1_767_225_600.0
SEED = bytes(range(32))


def wire(name: str) -> ProviderWire:
    cls = PROVIDERS[name]
    return cls(StreamSpec(cls.new_ids(), ("inbound",), parse_codec(cls.default_codec), {}, epoch_ms=0))


def callback(name: str, variant: str | None = None) -> StatusCallback:
    out = wire(name).status_callback(
        "started", url="wss://gw/stream/bot-1", control_id="bot-1", at=NOW, variant=variant
    )
    assert out is not None
    return out


def params(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode(), keep_blank_values=True)


@pytest.mark.parametrize("name", ["twilio", "signalwire"])
def test_cxml_forms_carry_a_twilio_style_signature(name: str) -> None:
    request = signed_request(name, URL, callback(name, "cxml"), CallbackAuth(signing_key="k3y"), NOW)
    header = "X-Twilio-Signature" if name == "twilio" else "X-SignalWire-Signature"
    signature = request.headers[header]
    form = params(request.body)
    assert dict(form)["StreamEvent"] == "stream-started" and dict(form)["StreamName"] == "bot-1"
    kwargs = {"method": "POST", "params": form, "body": request.body, "json_body": False}
    check = signatures.check_twilio if name == "twilio" else signatures.check_signalwire
    assert check(["k3y"], signature, request.url, **kwargs)  # type: ignore[arg-type]
    assert not check(["other"], signature, request.url, **kwargs)  # type: ignore[arg-type]


def test_swml_json_carries_signalwires_hex_signature() -> None:
    request = signed_request("signalwire", URL, callback("signalwire"), CallbackAuth(signing_key="k3y"), NOW)
    body = json.loads(request.body)
    assert body["event_type"] == "calling.call.stream"
    assert body["params"]["state"] == "streaming" and body["params"]["control_id"] == "bot-1"
    assert request.headers["Content-Type"] == "application/json"
    signature = request.headers["X-SignalWire-Signature"]
    kwargs = {"method": "POST", "params": (), "body": request.body, "json_body": True}
    assert signatures.check_signalwire(["k3y"], signature, request.url, **kwargs)  # type: ignore[arg-type]
    assert not signatures.check_signalwire(["nope"], signature, request.url, **kwargs)  # type: ignore[arg-type]


def test_a_twilio_json_body_is_signed_through_body_sha256() -> None:
    request = signed_request(
        "twilio", URL, StatusCallback("application/json", json={"a": 1}), CallbackAuth(signing_key="k"), NOW
    )
    query = dict(parse_qsl(urlsplit(request.url).query))
    assert query["bodySHA256"] == signatures.body_sha256(request.body) and query["provider"] == "x"
    assert signatures.check_twilio(
        ["k"],
        request.headers["X-Twilio-Signature"],
        request.url,
        method="POST",
        params=(),
        body=request.body,
        json_body=True,
    )


@pytest.mark.parametrize("variant", ["json", "texml"])
def test_telnyx_signs_with_ed25519_over_timestamp_and_body(variant: str) -> None:
    key = base64.b64encode(SEED).decode()
    request = signed_request("telnyx", URL, callback("telnyx", variant), CallbackAuth(signing_key=key), NOW)
    public = bytes(nacl.signing.SigningKey(SEED).verify_key)
    assert request.headers["telnyx-timestamp"] == str(int(NOW))
    signature = request.headers["telnyx-signature-ed25519"]
    assert signatures.check_telnyx([public], signature, request.headers["telnyx-timestamp"], request.body)
    assert not signatures.check_telnyx([public], signature, "1", request.body)
    if variant == "json":
        assert json.loads(request.body)["data"]["event_type"] == "streaming.started"
    else:
        assert dict(params(request.body))["CallSidLegacy"]


def test_telnyx_keys_are_read_as_base64_or_hex_seed_or_keypair() -> None:
    keypair = SEED + bytes(nacl.signing.SigningKey(SEED).verify_key)
    assert ed25519_seed(base64.b64encode(SEED).decode()) == SEED
    assert ed25519_seed(base64.b64encode(keypair).decode()) == SEED
    assert ed25519_seed(SEED.hex()) == SEED
    with pytest.raises(ValueError, match="32 bytes"):
        ed25519_seed(base64.b64encode(b"short").decode())


def test_plivo_signs_v3_with_a_nonce() -> None:
    request = signed_request("plivo", URL, callback("plivo"), CallbackAuth(signing_key="tok"), NOW)
    form = params(request.body)
    assert dict(form)["Event"] == "StartStream" and dict(form)["ServiceURL"] == "wss://gw/stream/bot-1"
    nonce, signature = request.headers["X-Plivo-Signature-V3-Nonce"], request.headers["X-Plivo-Signature-V3"]
    assert signatures.check_plivo(["tok"], signature, nonce, request.url, method="POST", params=form)
    assert not signatures.check_plivo(["tok"], signature, nonce + "x", request.url, method="POST", params=form)


def test_shared_secrets_for_any_provider() -> None:
    bearer = signed_request("bandwidth", URL, callback("bandwidth"), CallbackAuth(token="t0k"), NOW)
    assert bearer.headers["Authorization"] == "Bearer t0k"
    basic = signed_request("bandwidth", URL, callback("bandwidth"), CallbackAuth(basic="bw:pa:ss"), NOW)
    assert base64.b64decode(basic.headers["Authorization"].removeprefix("Basic ")) == b"bw:pa:ss"
    body = json.loads(basic.body)
    assert body["eventType"] == "mediaStreamStarted" and body["mediaStream"]["name"] == "bot-1"
    # A provider that does not sign gets no signature header from a signing key.
    unsigned = signed_request("bandwidth", URL, callback("bandwidth"), CallbackAuth(signing_key="k"), NOW)
    assert set(unsigned.headers) == {"Content-Type"}


def test_stopped_callbacks() -> None:
    expected = {
        ("signalwire", "swml"): ("params", "state", "finished"),
        ("telnyx", "json"): ("data", "event_type", "streaming.stopped"),
        ("bandwidth", "json"): (None, "eventType", "mediaStreamStopped"),
    }
    for (name, variant), (outer, key, value) in expected.items():
        out = wire(name).status_callback("stopped", url="wss://gw/stream", control_id="c", at=NOW, variant=variant)
        assert out is not None and out.json is not None
        body = out.json[outer] if outer else out.json
        assert body[key] == value
    for name, field, value in (("twilio", "StreamEvent", "stream-stopped"), ("plivo", "Event", "StopStream")):
        out = wire(name).status_callback("stopped", url="wss://gw/stream", control_id="c", at=NOW, variant=None)
        assert out is not None and out.form is not None and out.form[field] == value
    for name in ("vonage", "exotel", "jambonz"):
        assert (
            wire(name).status_callback("started", url="wss://gw/stream", control_id="c", at=NOW, variant=None) is None
        )

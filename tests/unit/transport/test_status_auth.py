"""Who may post to ``/status``: the status settings, the credential files and the check of one callback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from gateway.errors import ConfigError
from gateway.protocol import signatures
from gateway.settings import load_settings
from gateway.transport.status_auth import (
    HINT_EVERY,
    RELOAD_EVERY,
    CallbackRequest,
    StatusAuth,
    load_credentials,
)

URL = "https://gw.example.com/status"
FORM = (("CallSid", "CA1"), ("StreamEvent", "stream-started"), ("StreamSid", "MZ1"))
SEED = hashlib.sha256(b"telnyx test key").digest()


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def make_auth(tmp_path: Path, *, nats_url: str = "nats://n:4222", **files: str) -> StatusAuth:
    """A StatusAuth over credential files holding ``files`` (``twilio_auth_token="..."`` ...)."""
    env = {f"SGW_STATUS__{name.upper()}_FILE": str(write(tmp_path, name, text)) for name, text in files.items()}
    auth = StatusAuth.from_settings(load_settings(env, {"nats.url": nats_url}))
    auth.clock = auth.monotonic = Clock()
    return auth


def form_request(headers: dict[str, str], params: tuple[tuple[str, str], ...] = FORM) -> CallbackRequest:
    return CallbackRequest("POST", URL, headers, b"&".join(f"{k}={v}".encode() for k, v in params), params)


def twilio_sig(key: str, params: tuple[tuple[str, str], ...] = FORM) -> str:
    payload = URL + "".join(k + v for k, v in sorted(params))
    return base64.b64encode(hmac.new(key.encode(), payload.encode(), hashlib.sha1).digest()).decode()


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "overrides", "unauthenticated"),
    [
        ({}, {"server.host": "127.0.0.1"}, True),  # make run: embedded NATS, loopback
        ({}, {"server.host": "::1"}, True),
        ({}, {}, False),  # streamgw serve on 0.0.0.0: reachable, so closed
        ({}, {"server.host": "127.0.0.1", "nats.url": "nats://n:4222"}, False),  # a real NATS: closed
        ({"SGW_STATUS__ALLOW_UNAUTHENTICATED": "false"}, {"server.host": "127.0.0.1"}, False),
        ({"SGW_STATUS__ALLOW_UNAUTHENTICATED": "true"}, {"nats.url": "nats://n:4222"}, True),
    ],
)
def test_open_only_for_a_local_quick_start_unless_set(
    env: dict[str, str], overrides: dict[str, Any], unauthenticated: bool
) -> None:
    assert load_settings(env, overrides).status_unauthenticated is unauthenticated


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SGW_STATUS__PUBLIC_BASE_URL": "gw.example.com"}, "SGW_STATUS__PUBLIC_BASE_URL"),
        ({"SGW_STATUS__PUBLIC_BASE_URL": "https://gw.example.com/?x=1"}, "SGW_STATUS__PUBLIC_BASE_URL"),
        ({"SGW_STATUS__TELNYX_MAX_AGE": "0"}, "SGW_STATUS__TELNYX_MAX_AGE"),
        ({"SGW_STATUS__BASIC_USERNAME_FILE": "/u"}, "SGW_STATUS__BASIC_PASSWORD_FILE"),
        ({"SGW_STATUS__ALLOW_UNAUTHENTICATED": "maybe"}, "SGW_STATUS__ALLOW_UNAUTHENTICATED"),
    ],
)
def test_invalid_status_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.setting == variable


# -- credential files ---------------------------------------------------------------------------


def test_credential_files_are_read_one_secret_a_line(tmp_path: Path) -> None:
    public = bytes(nacl.signing.SigningKey(SEED).verify_key)
    der = bytes.fromhex("302a300506032b6570032100") + public
    pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n"
    auth = make_auth(
        tmp_path,
        twilio_auth_token="old-token\n\nnew-token  \n",
        telnyx_public_key=base64.b64encode(public).decode() + "\n" + pem,
        basic_username="bw-user\n",
        basic_password="s3cret\n",
    )
    creds = auth.credentials
    assert creds.twilio == ("old-token", "new-token")
    assert creds.telnyx == (public, public)
    assert creds.basic == (hashlib.sha256(b"bw-user").digest(), hashlib.sha256(b"s3cret").digest())
    assert creds.schemes() == ["Twilio signature", "Telnyx signature", "HTTP Basic"]


@pytest.mark.parametrize(
    ("files", "variable", "message"),
    [
        ({"twilio_auth_token": None}, "SGW_STATUS__TWILIO_AUTH_TOKEN_FILE", "cannot read"),
        ({"plivo_auth_token": " \n\n"}, "SGW_STATUS__PLIVO_AUTH_TOKEN_FILE", "is empty"),
        ({"telnyx_public_key": "bm90IGEga2V5"}, "SGW_STATUS__TELNYX_PUBLIC_KEY_FILE", "not an Ed25519 public key"),
        ({"telnyx_public_key": "-----BEGIN PUBLIC KEY-----\nAAAA"}, "SGW_STATUS__TELNYX_PUBLIC_KEY_FILE", "PEM"),
        ({"basic_username": "u", "basic_password": "\n"}, "SGW_STATUS__BASIC_PASSWORD_FILE", "is empty"),
    ],
)
def test_a_bad_credential_file_stops_the_start_naming_its_variable(
    tmp_path: Path, files: dict[str, str | None], variable: str, message: str
) -> None:
    env = {}
    for name, text in files.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text)
        env[f"SGW_STATUS__{name.upper()}_FILE"] = str(path)
    with pytest.raises(ConfigError, match=message) as info:
        load_credentials(load_settings(env).status)
    assert info.value.setting == variable


def test_rotated_files_are_read_again_and_a_broken_one_keeps_the_old(tmp_path: Path) -> None:
    auth = make_auth(tmp_path, bearer_token="first")
    clock = auth.monotonic
    assert isinstance(clock, Clock)
    bearer = {"authorization": "Bearer second"}
    assert not auth.authenticate(form_request(bearer)).accepted
    (tmp_path / "bearer_token").write_text("second\n")
    assert not auth.authenticate(form_request(bearer)).accepted  # not looked at again yet
    clock.now += RELOAD_EVERY
    assert auth.authenticate(form_request(bearer)).accepted
    assert not auth.authenticate(form_request({"authorization": "Bearer first"})).accepted
    (tmp_path / "bearer_token").write_text("")
    clock.now += RELOAD_EVERY
    assert auth.authenticate(form_request(bearer)).accepted  # an empty file is a mistake: keep the old token


# -- authenticate -------------------------------------------------------------------------------


def test_twilio_signature_names_twilio_and_signalwire_alias_names_signalwire(tmp_path: Path) -> None:
    auth = make_auth(tmp_path, twilio_auth_token="tw-token", signalwire_signing_key="sw-key")
    verdict = auth.authenticate(form_request({"x-twilio-signature": twilio_sig("tw-token")}))
    assert (verdict.accepted, verdict.provider) == (True, "twilio")
    verdict = auth.authenticate(form_request({"x-twilio-signature": twilio_sig("sw-key")}))
    assert (verdict.accepted, verdict.provider) == (True, "signalwire")
    verdict = auth.authenticate(form_request({"x-signalwire-signature": twilio_sig("sw-key")}))
    assert (verdict.accepted, verdict.provider) == (True, "signalwire")
    forged = form_request({"x-twilio-signature": twilio_sig("tw-token")}, (*FORM[:1], ("StreamEvent", "stream-error")))
    verdict = auth.authenticate(forged)
    assert not verdict.accepted and verdict.claimed == "twilio"
    assert "X-Twilio-Signature does not verify" in verdict.problem and "PUBLIC_BASE_URL" in verdict.problem


def test_signalwire_json(tmp_path: Path) -> None:
    auth = make_auth(tmp_path, signalwire_signing_key="sw-key")
    body = b'{"event_type":"calling.call.stream"}'
    signature = hmac.new(b"sw-key", URL.encode() + body, hashlib.sha1).hexdigest()
    request = CallbackRequest("POST", URL, {"x-signalwire-signature": signature}, body, (), json_body=True)
    assert auth.authenticate(request).provider == "signalwire"
    request = CallbackRequest("POST", URL, {"x-signalwire-signature": signature}, body + b" ", (), json_body=True)
    assert not auth.authenticate(request).accepted


def test_telnyx_signature_and_its_age(tmp_path: Path) -> None:
    key = nacl.signing.SigningKey(SEED)
    auth = make_auth(tmp_path, telnyx_public_key=base64.b64encode(bytes(key.verify_key)).decode())
    clock = auth.clock
    assert isinstance(clock, Clock)
    body = b'{"data":{"event_type":"streaming.started"}}'

    def signed(ts: int) -> CallbackRequest:
        signature = base64.b64encode(key.sign(f"{ts}|".encode() + body).signature).decode()
        headers = {"telnyx-signature-ed25519": signature, "telnyx-timestamp": str(ts)}
        return CallbackRequest("POST", URL, headers, body, (), json_body=True)

    now = int(clock.now)
    assert auth.authenticate(signed(now - 299)).provider == "telnyx"
    stale = auth.authenticate(signed(now - 301))
    assert not stale.accepted and "replay" in stale.problem and stale.claimed == "telnyx"


def test_plivo_signature(tmp_path: Path) -> None:
    auth = make_auth(tmp_path, plivo_auth_token="pl-token")
    form = (("Event", "StartStream"), ("CallUUID", "c-1"))
    signature = signatures.plivo_v3_signature("pl-token", "POST", URL, form, "nonce-1")
    headers = {"x-plivo-signature-v3": signature, "x-plivo-signature-v3-nonce": "nonce-1"}
    assert auth.authenticate(form_request(headers, form)).provider == "plivo"
    headers["x-plivo-signature-v3-nonce"] = "nonce-2"
    assert not auth.authenticate(form_request(headers, form)).accepted


def test_shared_secrets_accept_any_provider(tmp_path: Path) -> None:
    auth = make_auth(tmp_path, bearer_token="tok", basic_username="bw", basic_password="pw")
    assert auth.authenticate(form_request({"authorization": "Bearer tok"})).accepted
    basic = base64.b64encode(b"bw:pw").decode()
    verdict = auth.authenticate(form_request({"authorization": f"Basic {basic}"}))
    assert (verdict.accepted, verdict.provider) == (True, None)
    for wrong in (b"bw:px", b"bx:pw", b"bwpw"):
        value = base64.b64encode(wrong).decode()
        assert not auth.authenticate(form_request({"authorization": f"Basic {value}"})).accepted
    assert not auth.authenticate(form_request({"authorization": "Basic %%%"})).accepted
    assert not auth.authenticate(form_request({"authorization": "Bearer nope"})).accepted
    refused = auth.authenticate(form_request({}))
    assert not refused.accepted and "no credential presented" in refused.problem


def test_without_credentials_everything_is_refused_unless_open(tmp_path: Path) -> None:
    closed = make_auth(tmp_path)
    verdict = closed.authenticate(form_request({"authorization": "Bearer anything"}))
    assert not verdict.accepted and "SGW_STATUS__ALLOW_UNAUTHENTICATED" in verdict.problem
    level, line = closed.describe()
    assert level == logging.WARNING and "refuses every callback" in line
    quick_start = make_auth(tmp_path, nats_url="")
    assert quick_start.open is False  # 0.0.0.0 is not loopback
    auth = StatusAuth.from_settings(load_settings({}, {"server.host": "127.0.0.1"}))
    assert auth.open and auth.authenticate(form_request({})).accepted
    level, line = auth.describe()
    assert level == logging.INFO and "quick start" in line


def test_an_open_gateway_still_names_the_signer(tmp_path: Path) -> None:
    env = {
        "SGW_STATUS__ALLOW_UNAUTHENTICATED": "true",
        "SGW_STATUS__TWILIO_AUTH_TOKEN_FILE": str(write(tmp_path, "t", "tw-token")),
    }
    auth = StatusAuth.from_settings(load_settings(env, {"nats.url": "nats://n:4222"}))
    assert auth.authenticate(form_request({"x-twilio-signature": twilio_sig("tw-token")})).provider == "twilio"
    assert auth.authenticate(form_request({})).accepted
    level, line = auth.describe()
    assert level == logging.WARNING and "anyone who reaches the public port" in line


def test_refusals_are_logged_once_a_minute(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    auth = make_auth(tmp_path)
    clock = auth.monotonic
    assert isinstance(clock, Clock)
    caplog.set_level(logging.WARNING, "gateway.transport.status_auth")
    for _ in range(5):
        auth.log_refusal(auth.authenticate(form_request({})), URL)
    clock.now += HINT_EVERY
    auth.log_refusal(auth.authenticate(form_request({})), URL)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert "no status credential is configured" in lines[0] and "4 more refused" in lines[1]

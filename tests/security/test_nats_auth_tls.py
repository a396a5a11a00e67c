"""The gateway's own NATS connection: user/password, token, NKey seed, ``.creds`` (JWT), and TLS.

Each mode runs a real nats-server that demands it, and a call must reach a subscriber through it;
the wrong credential must stop the gateway at start-up with a ConfigError that does not echo the
secret. NKey and ``.creds`` auth use the ``nkeys`` package (``nats-py[nkeys]``, a project
dependency).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.embedded_nats import EmbeddedNats
from gateway.errors import ConfigError
from gateway.tools.simulate import SimulateOptions, simulate
from tests.reliability.conftest import GatewayFactory, RecorderFactory
from tests.reliability.harness import call_done, eventually, verify_call
from tests.security.certs import self_signed

PASSWORD = "nats-pa55-" + "q" * 12
TOKEN = "nats-t0ken-" + "z" * 12


@pytest.fixture
async def broker_factory() -> AsyncIterator[Callable[..., Any]]:
    started: list[EmbeddedNats] = []

    async def make(*args: str) -> EmbeddedNats:
        broker = EmbeddedNats(extra_args=args)
        await broker.start()
        started.append(broker)
        return broker

    yield make
    for broker in started:
        await broker.close()


async def one_call_through(
    gateway_factory: GatewayFactory,
    recorder_factory: RecorderFactory,
    url: str,
    gateway_settings: dict[str, Any],
    subscriber_options: dict[str, Any],
) -> int:
    gw = await gateway_factory(url, **gateway_settings)
    rec = await recorder_factory(url, **subscriber_options)
    report = await simulate(SimulateOptions(url=gw.ws_url, calls=1, track="both", duration=0.5, realtime=False))
    await eventually(lambda: call_done(rec, report.calls[0]), 10, "call delivered")
    return verify_call(rec, report.calls[0])


async def refused_at_start(gateway_factory: GatewayFactory, url: str, settings: dict[str, Any]) -> ConfigError:
    """The gateway must not start; a short ``initial_connect_timeout`` keeps the retries brief."""
    with pytest.raises(ConfigError) as info:
        await gateway_factory(url, **{"nats.initial_connect_timeout": 2.0, **settings})
    return info.value


async def test_user_password(
    broker_factory: Callable[..., Any], gateway_factory: GatewayFactory, recorder_factory: RecorderFactory
) -> None:
    broker = await broker_factory("--user", "gateway", "--pass", PASSWORD)
    creds = {"nats.user": "gateway", "nats.password": PASSWORD}
    frames = await one_call_through(
        gateway_factory, recorder_factory, broker.url, creds, {"user": "gateway", "password": PASSWORD}
    )
    wrong = await refused_at_start(gateway_factory, broker.url, {"nats.user": "gateway", "nats.password": "nope-123"})
    missing = await refused_at_start(gateway_factory, broker.url, {})
    print(f"NATS user/password: {frames} frames delivered; wrong password -> {wrong.message!r}")
    assert "nope-123" not in wrong.message and PASSWORD not in wrong.message
    assert "Authorization" in missing.message or "authorization" in missing.message.lower()


async def test_token(
    broker_factory: Callable[..., Any], gateway_factory: GatewayFactory, recorder_factory: RecorderFactory
) -> None:
    broker = await broker_factory("--auth", TOKEN)
    frames = await one_call_through(
        gateway_factory, recorder_factory, broker.url, {"nats.token": TOKEN}, {"token": TOKEN}
    )
    wrong = await refused_at_start(gateway_factory, broker.url, {"nats.token": "wrong-token-456"})
    print(f"NATS token: {frames} frames delivered; wrong token -> {wrong.message!r}")
    assert "wrong-token-456" not in wrong.message and TOKEN not in wrong.message


async def test_tls_to_nats(
    broker_factory: Callable[..., Any],
    gateway_factory: GatewayFactory,
    recorder_factory: RecorderFactory,
    tmp_path: Path,
) -> None:
    pair = self_signed(tmp_path, "nats")
    other = self_signed(tmp_path, "other")
    broker = await broker_factory("--tls", "--tlscert", str(pair.cert), "--tlskey", str(pair.key))
    client_tls = ssl.create_default_context(cafile=str(pair.cert))
    frames = await one_call_through(
        gateway_factory, recorder_factory, broker.url, {"nats.tls_ca_file": pair.cert}, {"tls": client_tls}
    )
    no_tls = await refused_at_start(gateway_factory, broker.url, {})
    wrong_ca = await refused_at_start(gateway_factory, broker.url, {"nats.tls_ca_file": other.cert})
    print(f"NATS TLS: {frames} frames delivered; without TLS -> {no_tls.message!r}; wrong CA -> {wrong_ca.message!r}")


# -- NKeys and JWTs --------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _keypair(prefix_name: str) -> Any:
    nkeys = importlib.import_module("nkeys")  # installed with nats-py[nkeys], a project dependency
    seed = nkeys.encode_seed(os.urandom(32), getattr(nkeys, f"PREFIX_BYTE_{prefix_name}"))
    return nkeys.from_seed(bytearray(seed))


def _jwt(claims: dict[str, Any], signer: Any) -> str:
    """A NATS v2 JWT (``ed25519-nkey``), the way ``nsc`` writes one."""
    claims = {"iat": int(time.time()), "iss": signer.public_key.decode(), **claims}
    claims["jti"] = base64.b32encode(hashlib.sha256(json.dumps(claims, sort_keys=True).encode()).digest()).decode()
    header = _b64url(json.dumps({"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    body = _b64url(json.dumps(claims).encode())
    signature = _b64url(signer.sign(f"{header}.{body}".encode()))
    return f"{header}.{body}.{signature}"


async def test_nkey_seed_file(
    broker_factory: Callable[..., Any],
    gateway_factory: GatewayFactory,
    recorder_factory: RecorderFactory,
    tmp_path: Path,
) -> None:
    user = _keypair("USER")
    stranger = _keypair("USER")
    conf = tmp_path / "nkey.conf"
    conf.write_text(
        "authorization { users = [ "
        f'{{ nkey: "{user.public_key.decode()}" }}, '
        f'{{ user: "recorder", password: "{PASSWORD}" }} ] }}\n'
    )
    seed_file = tmp_path / "gateway.nk"
    seed_file.write_bytes(bytes(user.seed))
    stranger_file = tmp_path / "stranger.nk"
    stranger_file.write_bytes(bytes(stranger.seed))
    broker = await broker_factory("-c", str(conf))
    frames = await one_call_through(
        gateway_factory,
        recorder_factory,
        broker.url,
        {"nats.nkey_seed_file": seed_file},
        {"user": "recorder", "password": PASSWORD},
    )
    wrong = await refused_at_start(gateway_factory, broker.url, {"nats.nkey_seed_file": stranger_file})
    print(f"NATS NKey: {frames} frames delivered; unknown NKey -> {wrong.message!r}")
    assert bytes(user.seed).decode() not in wrong.message and bytes(stranger.seed).decode() not in wrong.message


async def test_creds_file_operator_mode(
    gateway_factory: GatewayFactory,
    recorder_factory: RecorderFactory,
    tmp_path: Path,
) -> None:
    operator, account, user = _keypair("OPERATOR"), _keypair("ACCOUNT"), _keypair("USER")
    unlimited = {"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": True, "conn": -1}
    op_jwt = _jwt(
        {"name": "test-operator", "sub": operator.public_key.decode(), "nats": {"type": "operator", "version": 2}},
        operator,
    )
    acc_pub = account.public_key.decode()
    acc_jwt = _jwt(
        {
            "name": "streams",
            "sub": acc_pub,
            "nats": {"type": "account", "version": 2, "limits": {**unlimited, "leaf": -1}},
        },
        operator,
    )
    user_jwt = _jwt(
        {
            "name": "gateway",
            "sub": user.public_key.decode(),
            "nats": {"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1},
        },
        account,
    )
    conf = tmp_path / "operator.conf"
    conf.write_text(f'operator: "{op_jwt}"\nresolver: MEMORY\nresolver_preload: {{ {acc_pub}: "{acc_jwt}" }}\n')
    creds = tmp_path / "gateway.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\n"
        f"{user_jwt}\n"
        "------END NATS USER JWT------\n\n"
        "-----BEGIN USER NKEY SEED-----\n"
        f"{bytes(user.seed).decode()}\n"
        "------END USER NKEY SEED------\n"
    )
    # Operator mode has no JetStream for this account: the broker runs without it.
    broker = EmbeddedNats(jetstream=False, extra_args=("-c", str(conf)))
    await broker.start()
    try:
        frames = await one_call_through(
            gateway_factory, recorder_factory, broker.url, {"nats.creds_file": creds}, {"user_credentials": str(creds)}
        )
    finally:
        await broker.close()
    print(f"NATS .creds (operator/account/user JWT chain): {frames} frames delivered")

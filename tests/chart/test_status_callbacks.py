"""The chart never serves ``/status`` open: the default render refuses every unsigned callback, and
each ``gateway.statusCallbacks`` credential reaches the gateway as a mounted file its setting names.

The rendered environment is loaded by the gateway's own settings and credential code, with the
projected volume played by files in a temporary directory (as the kubelet would write them).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from gateway.settings import load_settings
from gateway.transport.status_auth import CallbackRequest, StatusAuth
from tests.chart.helm import CHART, CI_VALUES, Helm, Manifest, container, env_of, one

pytestmark = pytest.mark.timeout(120)

MOUNT = "/etc/stream-gateway/status"
EVERY_CREDENTIAL = {
    "gateway.statusCallbacks.publicBaseUrl": "https://streams.example.com",
    "gateway.statusCallbacks.twilio.existingSecret": "tw",
    "gateway.statusCallbacks.signalwire.existingSecret": "sw",
    "gateway.statusCallbacks.signalwire.key": "signing-key",
    "gateway.statusCallbacks.telnyx.existingSecret": "tx",
    "gateway.statusCallbacks.plivo.existingSecret": "pl",
    "gateway.statusCallbacks.bearer.existingSecret": "shared",
    "gateway.statusCallbacks.basicAuth.existingSecret": "bw",
}
TELNYX = nacl.signing.SigningKey(b"\x05" * 32)
SECRETS = {  # (Secret, key) -> what the kubelet would write into the file
    ("tw", "authToken"): "tw-token\n",
    ("sw", "signing-key"): "PSK-sw\n",
    ("tx", "publicKey"): base64.b64encode(bytes(TELNYX.verify_key)).decode(),
    ("pl", "authToken"): "pl-token",
    ("shared", "token"): "t-1\nt-2\n",
    ("bw", "username"): "bw-user",
    ("bw", "password"): "bw-pass\n",
    ("sgw-status-twilio", "authToken"): "tw-token",
    ("sgw-status-telnyx", "publicKey"): base64.b64encode(bytes(TELNYX.verify_key)).decode(),
    ("sgw-status-bandwidth", "username"): "bw-user",
    ("sgw-status-bandwidth", "password"): "bw-pass",
}


@pytest.fixture(scope="module")
def render(helm: Helm) -> Any:
    @functools.cache
    def _render(values: Path | None = None, **set_values: str) -> list[Manifest]:
        return helm.render([values] if values else [], set_values=set_values)

    return _render


def gateway_of(docs: list[Manifest]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the gateway container's env, its pod spec)."""
    deployment = one(docs, "Deployment", "gateway")
    return env_of(container(deployment, "gateway")), deployment["spec"]["template"]["spec"]


def status_files(pod: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Path under the mount -> (Secret, key) of the projected status volume (empty: none)."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    if "status-credentials" not in volumes:
        return {}
    files = {}
    for source in volumes["status-credentials"]["projected"]["sources"]:
        for item in source["secret"]["items"]:
            files[item["path"]] = (source["secret"]["name"], item["key"])
    return files


def kubelet(env: dict[str, Any], pod: dict[str, Any], root: Path) -> dict[str, str]:
    """The rendered env with the status mount moved to ``root``, where the Secrets' files now are."""
    for path, ref in status_files(pod).items():
        (root / path).write_text(SECRETS[ref])
    literal = {k: v for k, v in env.items() if k.startswith("SGW_") and isinstance(v, str)}
    return {k: v.replace(MOUNT, str(root)) for k, v in literal.items()}


def form_request(headers: dict[str, str]) -> CallbackRequest:
    params = (("CallSid", "CA1"), ("StreamEvent", "stream-started"))
    return CallbackRequest("POST", "https://streams.example.com/status", headers, b"", params)


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["defaults", *(p.stem for p in CI_VALUES)])
def test_no_scenario_serves_status_open(render: Any, values: Path | None, tmp_path: Path) -> None:
    env, pod = gateway_of(render(values))
    assert env["SGW_STATUS__ALLOW_UNAUTHENTICATED"] == "false"
    auth = StatusAuth.from_settings(load_settings(kubelet(env, pod, tmp_path)))
    assert not auth.open
    verdict = auth.authenticate(form_request({}))
    assert not verdict.accepted, "an unsigned callback must be refused"
    # every credential file the gateway is told about is one the chart mounts, and the reverse
    files = {k: v for k, v in env.items() if k.startswith("SGW_STATUS__") and k.endswith("_FILE")}
    assert {Path(v).relative_to(MOUNT).as_posix() for v in files.values()} == set(status_files(pod))


def test_default_render_has_no_status_credential(render: Any) -> None:
    env, pod = gateway_of(render())
    assert status_files(pod) == {}
    assert not [k for k in env if k.startswith("SGW_STATUS__") and k.endswith("_FILE")]
    assert "SGW_STATUS__PUBLIC_BASE_URL" not in env


def test_every_credential_is_a_mounted_file(render: Any, tmp_path: Path) -> None:
    env, pod = gateway_of(render(**EVERY_CREDENTIAL))
    assert status_files(pod) == {
        "twilio": ("tw", "authToken"),
        "signalwire": ("sw", "signing-key"),
        "telnyx": ("tx", "publicKey"),
        "plivo": ("pl", "authToken"),
        "bearer": ("shared", "token"),
        "basic-username": ("bw", "username"),
        "basic-password": ("bw", "password"),
    }
    volume = next(v for v in pod["volumes"] if v["name"] == "status-credentials")
    assert volume["projected"]["defaultMode"] == 0o440
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "status-credentials")
    assert mount == {"name": "status-credentials", "mountPath": MOUNT, "readOnly": True}
    assert env["SGW_STATUS__PUBLIC_BASE_URL"] == "https://streams.example.com"
    auth = StatusAuth.from_settings(load_settings(kubelet(env, pod, tmp_path)))
    assert auth.credentials.schemes() == [
        "Twilio signature",
        "SignalWire signature",
        "Telnyx signature",
        "Plivo signature",
        "bearer token",
        "HTTP Basic",
    ]
    payload = "https://streams.example.com/statusCallSidCA1StreamEventstream-started"
    signature = base64.b64encode(hmac.new(b"tw-token", payload.encode(), hashlib.sha1).digest()).decode()
    assert auth.authenticate(form_request({"x-twilio-signature": signature})).provider == "twilio"
    assert auth.authenticate(form_request({"authorization": "Bearer t-2"})).accepted
    basic = base64.b64encode(b"bw-user:bw-pass").decode()
    assert auth.authenticate(form_request({"authorization": f"Basic {basic}"})).accepted


def test_allow_unauthenticated_is_an_explicit_choice(render: Any, helm: Helm) -> None:
    env, _ = gateway_of(render(**{"gateway.statusCallbacks.allowUnauthenticated": "true"}))
    assert env["SGW_STATUS__ALLOW_UNAUTHENTICATED"] == "true"
    assert load_settings({k: v for k, v in env.items() if isinstance(v, str)}).status_unauthenticated
    env, _ = gateway_of(render(**{"gateway.statusCallbacks.telnyxMaxAgeSeconds": "60"}))
    assert load_settings({k: v for k, v in env.items() if isinstance(v, str)}).status.telnyx_max_age == 60


@pytest.mark.parametrize(
    ("set_values", "message"),
    [
        ({"gateway.settings.status.allow_unauthenticated": "true"}, "SGW_STATUS__ALLOW_UNAUTHENTICATED is set by"),
        ({"gateway.settings.status.bearer_token_file": "/x"}, "SGW_STATUS__BEARER_TOKEN_FILE is set by"),
        ({"gateway.settings.status.public_base_url": "https://x"}, "SGW_STATUS__PUBLIC_BASE_URL is set by"),
        ({"gateway.statusCallbacks.publicBaseUrl": "streams.example.com"}, "publicBaseUrl"),
        ({"gateway.statusCallbacks.publicBaseUrl": "https://s.example.com/?a=1"}, "publicBaseUrl"),
        ({"gateway.statusCallbacks.telnyxMaxAgeSeconds": "0"}, "telnyxMaxAgeSeconds"),
        ({"gateway.statusCallbacks.twilio.secret": "x"}, "secret"),
        ({"gateway.statusCallbacks.allowUnauthenticated": "yes"}, "allowUnauthenticated"),
    ],
)
def test_bad_status_values_are_refused(helm: Helm, set_values: dict[str, str], message: str) -> None:
    assert message in helm.render_error(set_values=set_values)


def test_notes_say_what_status_accepts(helm: Helm) -> None:
    def notes(**set_values: str) -> str:
        args = ["install", "sgw", str(CHART), "--namespace", "voice", "--dry-run=client"]
        for key, value in set_values.items():
            args += ["--set", f"{key}={value}"]
        return helm.run(*args).stdout

    assert "every status callback is refused with 401" in notes()
    assert "authenticated by: twilio, basicAuth" in notes(
        **{
            "gateway.statusCallbacks.twilio.existingSecret": "tw",
            "gateway.statusCallbacks.basicAuth.existingSecret": "bw",
            "gateway.statusCallbacks.publicBaseUrl": "https://s.example.com",
        }
    )
    assert "anyone who reaches the public port" in notes(**{"gateway.statusCallbacks.allowUnauthenticated": "true"})

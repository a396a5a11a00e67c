"""Operator settings: SGW_OPERATOR_* variables, defaults, typo rejection, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from sgw_operator.errors import ConfigError
from sgw_operator.settings import known_variables, load_settings


def test_defaults() -> None:
    s = load_settings({})
    assert s.nats.url == "nats://nats:4222"
    assert (s.kv.bucket, s.kv.key, s.kv.history) == ("sgw-routes", "table", 5)
    assert s.namespaces == ()
    assert (s.metrics_port, s.health_port) == (9091, 8081)
    assert s.kubeconfig is None


def test_every_variable_is_read() -> None:
    s = load_settings(
        {
            "SGW_OPERATOR_NATS_URL": "nats://a:4222,nats://b:4222",
            "SGW_OPERATOR_NATS_USER": "op",
            "SGW_OPERATOR_NATS_PASSWORD": "pw",
            "SGW_OPERATOR_NATS_CREDS_FILE": "/creds/op.creds",
            "SGW_OPERATOR_NATS_CONNECT_TIMEOUT": "2.5",
            "SGW_OPERATOR_KV_BUCKET": "routes",
            "SGW_OPERATOR_KV_KEY": "prod.table",
            "SGW_OPERATOR_NAMESPACES": " voice, team-b ,",
            "SGW_OPERATOR_METRICS_PORT": "0",
            "SGW_OPERATOR_LOG_FORMAT": "JSON",
            "KUBECONFIG": "/home/me/.kube/config",
            "SGW_NATS__URL": "belongs to the gateway",
        }
    )
    assert s.nats.url == "nats://a:4222,nats://b:4222"
    assert (s.nats.user, s.nats.password) == ("op", "pw")
    assert s.nats.creds_file == Path("/creds/op.creds")
    assert s.nats.connect_timeout == 2.5
    assert (s.kv.bucket, s.kv.key) == ("routes", "prod.table")
    assert s.namespaces == ("voice", "team-b")
    assert s.metrics_port == 0
    assert s.log_format == "json"
    assert s.kubeconfig == "/home/me/.kube/config"


def test_known_variables_match_the_documented_names() -> None:
    names = known_variables()
    for name in (
        "SGW_OPERATOR_NATS_URL",
        "SGW_OPERATOR_KV_BUCKET",
        "SGW_OPERATOR_KV_KEY",
        "SGW_OPERATOR_NAMESPACES",
        "SGW_OPERATOR_METRICS_PORT",
        "SGW_OPERATOR_NATS_CREDS_FILE",
        "SGW_OPERATOR_NATS_TOKEN",
    ):
        assert name in names
    assert "KUBECONFIG" not in names


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SGW_OPERATOR_KV_BUKET": "x"}, "SGW_OPERATOR_KV_BUKET"),
        ({"SGW_OPERATOR_METRICS_PORT": "http"}, "SGW_OPERATOR_METRICS_PORT"),
        ({"SGW_OPERATOR_METRICS_PORT": "70000"}, "SGW_OPERATOR_METRICS_PORT"),
        ({"SGW_OPERATOR_METRICS_PORT": "8081"}, "SGW_OPERATOR_METRICS_PORT"),
        ({"SGW_OPERATOR_NATS_TLS_CERT_FILE": "/c.pem"}, "SGW_OPERATOR_NATS_TLS_CERT_FILE"),
        ({"SGW_OPERATOR_NATS_URL": " "}, "SGW_OPERATOR_NATS_URL"),
        ({"SGW_OPERATOR_NATS_USER": "op"}, "SGW_OPERATOR_NATS_USER"),
        ({"SGW_OPERATOR_KV_BUCKET": "a.b"}, "SGW_OPERATOR_KV_BUCKET"),
        ({"SGW_OPERATOR_KV_KEY": "a b"}, "SGW_OPERATOR_KV_KEY"),
        ({"SGW_OPERATOR_KV_HISTORY": "65"}, "SGW_OPERATOR_KV_HISTORY"),
        ({"SGW_OPERATOR_NAMESPACES": "Voice"}, "SGW_OPERATOR_NAMESPACES"),
        ({"SGW_OPERATOR_LOG_FORMAT": "xml"}, "SGW_OPERATOR_LOG_FORMAT"),
        ({"SGW_OPERATOR_DELETE_TIMEOUT": "0"}, "SGW_OPERATOR_DELETE_TIMEOUT"),
        ({"SGW_OPERATOR_NATS_CONNECT_TIMEOUT": "-1"}, "SGW_OPERATOR_NATS_CONNECT_TIMEOUT"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.variable == variable
    assert variable in str(info.value)


def test_secrets_are_not_in_the_error_of_another_field() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"SGW_OPERATOR_NATS_PASSWORD": "s3cret"})
    assert "s3cret" not in str(info.value)

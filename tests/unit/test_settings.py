"""The settings tree: SGW_ variables, overrides, validation, defaults listing."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConfigError
from gateway.settings import env_defaults, load_settings


def test_defaults_and_env_twins() -> None:
    s = load_settings({})
    assert (s.server.port, s.server.internal_port, s.nats.url) == (8080, 9090, "")
    assert s.embedded_nats and s.routing_source == "static" and s.default_route_enabled
    s = load_settings(
        {
            "SGW_SERVER__PORT": "9000",
            "SGW_NATS__URL": "nats://n:4222",
            "SGW_BUFFER__OVERFLOW": "close",
            "SGW_OBSERVABILITY__SECRET_PARAMETERS": "pin, otp",
            "SGW_OPERATOR_NATS_URL": "ignored: belongs to the operator",
        }
    )
    assert s.server.port == 9000 and s.buffer.overflow == "close"
    assert s.observability.secret_parameters == ("pin", "otp")


def test_a_nats_url_alone_serves_the_default_route() -> None:
    """`serve --nats-url` without routes streams at once: the KV bucket is used only when selected."""
    s = load_settings({}, {"nats.url": "nats://n:4222"})
    assert s.routing_source == "static" and s.default_route_enabled
    s = load_settings({"SGW_NATS__URL": "nats://n:4222", "SGW_ROUTING__SOURCE": "natskv"})
    assert s.routing_source == "natskv" and not s.default_route_enabled
    s = load_settings({"SGW_ROUTING__FILE": "r.yaml", "SGW_NATS__URL": "nats://n:4222"})
    assert s.routing_source == "file" and not s.default_route_enabled


def test_flags_override_env() -> None:
    s = load_settings({"SGW_SERVER__PORT": "9000"}, {"server.port": 7000, "routing.file": Path("r.yaml")})
    assert s.server.port == 7000 and s.routing_source == "file"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"SGW_NATS__URLL": "x"}, "SGW_NATS__URLL"),
        ({"SGW_SERVER__PORT": "eighty"}, "SGW_SERVER__PORT"),
        ({"SGW_BUFFER__OVERFLOW": "explode"}, "SGW_BUFFER__OVERFLOW"),
        ({"SGW_SERVER__PORT": "9090"}, "SGW_SERVER__INTERNAL_PORT"),
        ({"SGW_SERVER__TLS_CERT_FILE": "/c.pem"}, "SGW_SERVER__TLS_KEY_FILE"),
        ({"SGW_ROUTING__SOURCE": "natskv"}, "SGW_ROUTING__SOURCE"),
        ({"SGW_BUFFER__MAX_FRAMES": "0"}, "SGW_BUFFER__MAX_FRAMES"),
        ({"SGW_ROUTING__DEFAULT_ROUTE": "maybe"}, "SGW_ROUTING__DEFAULT_ROUTE"),
    ],
)
def test_invalid_settings_name_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    assert info.value.setting == names


def test_every_setting_is_documented() -> None:
    rows = env_defaults()
    assert len(rows) > 40
    undocumented = [name for name, _, doc in rows if not doc]
    assert undocumented == []
    assert ("SGW_NATS__URL", "", rows[[r[0] for r in rows].index("SGW_NATS__URL")][2]) in rows

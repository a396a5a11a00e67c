"""The command line, the metrics endpoint and the kopf wiring's pure parts."""

from __future__ import annotations

import subprocess
import sys
from typing import cast

import aiohttp
import kopf
import pytest
from prometheus_client import CollectorRegistry

from sgw_operator import handlers
from sgw_operator.__main__ import kopf_cli_args, main
from sgw_operator.metrics import METRIC_NAMES, MetricsServer, OperatorMetrics
from sgw_operator.settings import load_settings
from tests.unit.operator.conftest import route_obj, with_secret


def test_help_lists_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "SGW_OPERATOR_NATS_URL" in out
    assert "SGW_OPERATOR_KV_BUCKET" in out


def test_unknown_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--livenes=http://0.0.0.0:8081/healthz"]) == 2
    assert "--livenes" in capsys.readouterr().err
    assert main(["--verbose"]) == 2


def test_a_bad_setting_exits_2_naming_it(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SGW_OPERATOR_KV_BUKET", "typo")
    assert main([]) == 2
    assert "SGW_OPERATOR_KV_BUKET" in capsys.readouterr().err


def test_module_runs_as_a_program() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sgw_operator", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "SGW_OPERATOR_METRICS_PORT" in result.stdout


def test_without_kopf_it_names_the_install_command_and_exits_2() -> None:
    """The gateway-only install (no ``[operator]`` extra): one line, no traceback, exit 2.

    kopf is hidden the way a missing distribution is (``sys.modules[name] = None`` makes its
    import raise ModuleNotFoundError), then the console script's own entry function runs."""
    program = (
        "import sys; sys.modules['kopf'] = None; sys.argv = ['streamgw-operator'];"
        "from sgw_operator.__main__ import main; sys.exit(main())"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "streamgw-operator: kopf is not installed; install the operator extra: pip install 'stream-gateway[operator]'"
    ]


def test_kopf_cli_args_follow_the_namespaces() -> None:
    assert kopf_cli_args(load_settings({})) == ["run", "--standalone", "-A"]
    scoped = load_settings({"SGW_OPERATOR_NAMESPACES": "voice,team"})
    assert kopf_cli_args(scoped) == ["run", "--standalone", "-n", "voice", "-n", "team"]


async def test_metrics_endpoint_serves_every_metric() -> None:
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.table_version.set(7)
    server = MetricsServer(metrics.registry, host="127.0.0.1", port=0)
    await server.start()
    try:
        assert server.port > 0
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{server.port}/metrics") as response,
        ):
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    finally:
        await server.close()
    for name in METRIC_NAMES:
        assert f"# HELP {name} " in text
    assert "sgw_operator_table_version 7.0" in text
    assert 'sgw_operator_reconciles_total{reason="secret_not_found"} 0.0' in text


def test_index_handlers() -> None:
    body = kopf.Body(cast(kopf.RawBody, route_obj("a", with_secret("tok"))))
    [(key, snap)] = handlers.index_routes(body).items()
    assert key == "voice/a"
    assert snap.spec is not None
    assert handlers.index_route_secrets(body) == {("voice", "tok"): "voice/a"}
    assert handlers.index_route_secrets(kopf.Body(cast(kopf.RawBody, route_obj("b")))) is None
    index = {("voice", "tok"): ["voice/a"]}
    assert handlers.secret_is_referenced("voice", "tok", route_secrets=index)
    assert not handlers.secret_is_referenced("voice", "other", route_secrets=index)
    assert not handlers.secret_is_referenced("team", "tok", route_secrets=index)


def test_kopf_is_configured_with_our_names() -> None:
    settings = kopf.OperatorSettings()
    handlers.configure_kopf(settings)
    assert settings.persistence.finalizer == "streamgateway.io/route-table"
    assert settings.posting.reporting_component == "sgw-operator"


def test_handlers_need_a_started_runtime() -> None:
    with pytest.raises(kopf.TemporaryError):
        handlers.runtime(kopf.Memo())

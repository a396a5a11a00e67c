"""``python -m sgw_operator`` as a real process (the container's command): configured only by
environment, it reconciles against the emulated cluster, serves /metrics, and exits 0 on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.embedded_nats import EmbeddedNats
from tests.integration.operator.harness import CRD, EXAMPLES, OperatorStack, eventually, route_names
from tests.k8s.fixtures import K8s

pytestmark = pytest.mark.timeout(120)
_METRICS_LINE = re.compile(r"metrics on http://[^:]+:(\d+)/metrics")


async def test_the_operator_process(
    k8s: K8s, nats_server: EmbeddedNats, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    k8s.apply_crd(CRD)
    k8s.create_namespace("voice")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SGW_", "KUBE"))}
    env.update(
        KUBECONFIG=str(k8s.kubeconfig),
        SGW_OPERATOR_NATS_URL=nats_server.url,
        SGW_OPERATOR_NAMESPACES="voice",
        SGW_OPERATOR_METRICS_PORT="0",
        SGW_OPERATOR_LISTEN_HOST="127.0.0.1",
        SGW_OPERATOR_LOG_FORMAT="plain",
    )
    log = tmp_path / "operator.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            # As the chart runs it: the liveness endpoint as kopf's --liveness argument.
            *(sys.executable, "-m", "sgw_operator", "--liveness=http://127.0.0.1:0/healthz"),
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )
    try:
        # The harness's KV reader and kubectl helpers, without starting a second operator.
        stack = OperatorStack(k8s, nats_server, "voice", monkeypatch)
        stack.kubectl("apply", "-f", str(EXAMPLES / "catch-all.yaml"))
        stack.kubectl("wait", "--for=condition=Ready", "--timeout=30s", "sr/catch-all", timeout=60)
        table = await stack.wait_table(lambda t: route_names(t) == ["voice/catch-all"])

        def metrics_port() -> int | None:
            match = _METRICS_LINE.search(log.read_text(errors="replace"))
            return int(match.group(1)) if match else None

        port = await eventually(metrics_port, message="the metrics endpoint to be announced")
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
        assert "sgw_operator_routes 1.0" in text
        assert f"sgw_operator_table_version {float(table.version)}" in text
        assert "process_cpu_seconds_total" in text  # the process-wide registry in production

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 30)

"""`streamgw serve --workers 2` as real processes: a supervisor, two gateway workers on one
SO_REUSEPORT port, one embedded broker. Calls land on both workers and every frame reaches NATS;
the supervisor's /metrics adds the workers' counts up and /readyz speaks for all of them; SIGTERM
stops everything with exit 0; a worker killed with SIGKILL comes back and is counted; a worker
that cannot start stops the start-up. Ports are the kernel's (banner and log lines name them).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nats
import pytest
from nats.aio.msg import Msg
from prometheus_client.metrics_core import Metric

from gateway.embedded_nats import EmbeddedNats
from gateway.observability.merge import parse
from gateway.settings import Settings, load_settings
from gateway.supervisor import SUPERVISOR_METRIC_NAMES, Supervisor, resolve_workers, worker_environment
from gateway.tools.simulate import SimulateOptions, SimulationReport, simulate
from tests.helpers import eventually
from tests.reliability.process import REPO, SERVE, GatewayProcess, stop_process

pytestmark = pytest.mark.timeout(240)

LOOPBACK = {
    "SGW_SERVER__HOST": "127.0.0.1",
    "SGW_SERVER__INTERNAL_HOST": "127.0.0.1",
    "SGW_SERVER__PORT": "0",
    "SGW_SERVER__INTERNAL_PORT": "0",
    "SGW_ROUTING__SOURCE": "static",
}
CALLS = 24
"""SO_REUSEPORT hashes each connection's addresses: 24 calls all on one of two workers has odds
of 2 in 2**24."""
_WORKER_UP = re.compile(r"worker (\d+) up: pid (\d+), internal (http://\S+)")
_EMBEDDED_NATS = re.compile(r"NATS      : (nats://\S+) \(embedded\)")


def workers_up(gw: GatewayProcess) -> dict[int, tuple[int, str]]:
    """Worker index -> (pid, internal URL) of its latest start, from the supervisor's log."""
    return {int(m.group(1)): (int(m.group(2)), m.group(3)) for m in _WORKER_UP.finditer(gw.text())}


def alive(pid: int) -> bool:
    """A gateway process with this pid still exists (a reused pid of another program does not count)."""
    try:
        return b"gateway" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False


async def get(url: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp,
    ):
        return resp.status, await resp.text()


async def scrape(internal_url: str) -> list[Metric]:
    status, text = await get(f"{internal_url}/metrics")
    assert status == 200, text
    return parse(text)


def total(families: list[Metric], name: str, **labels: str) -> float:
    return sum(
        s.value
        for family in families
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def wait_ready(internal_url: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll /readyz until 200, bounded; returns its body."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        status, text = await get(f"{internal_url}/readyz")
        if status == 200:
            body: dict[str, Any] = json.loads(text)
            return body
        if loop.time() > deadline:
            raise AssertionError(f"/readyz still {status} after {timeout}s: {text}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def supervisor(env: dict[str, str], workers: int = 2) -> AsyncIterator[GatewayProcess]:
    gw = await GatewayProcess.start(env, argv=(*SERVE, "--workers", str(workers)))
    seen: set[int] = set()
    try:
        await eventually(lambda: f"workers   : {workers}" in gw.text(), what="the whole banner")
        seen.update(pid for pid, _ in workers_up(gw).values())
        yield gw
    finally:
        seen.update(pid for pid, _ in workers_up(gw).values())
        await stop_process(gw)
        # Workers die with the supervisor (PR_SET_PDEATHSIG); make sure of it whatever happened.
        for pid in seen:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def assert_calls_ended_normally(report: SimulationReport) -> None:
    for call in report.calls:
        assert (call.close_code, call.error) == (1000, None), call


# ---- two workers, one port, one broker ---------------------------------------------------------


async def test_two_workers_share_the_port_and_every_frame_arrives() -> None:
    async with supervisor(LOOPBACK) as gw:
        text = gw.text()
        nats_match = _EMBEDDED_NATS.search(text)
        assert nats_match, text
        assert "default route" in text
        up = workers_up(gw)
        assert set(up) == {0, 1}
        assert len({pid for pid, _ in up.values()} | {gw.pid}) == 3
        body = await wait_ready(gw.internal_url)
        assert body["workers"] == 2

        nc = await nats.connect(nats_match.group(1))
        got: list[Msg] = []

        async def on_msg(msg: Msg) -> None:
            got.append(msg)

        await nc.subscribe("audio.>", cb=on_msg)
        await nc.flush()
        try:
            report = await simulate(
                SimulateOptions(url=gw.ws_url, calls=CALLS, track="both", duration=0.4, realtime=False)
            )
            assert_calls_ended_normally(report)
            sent = sum(len(call.sent[track]) for call in report.calls for track in call.tracks)
            assert sent > 0
            await eventually(lambda: len(got) >= sent, timeout=30, what="every frame on audio.>")
            assert len(got) == sent
            for call in report.calls:
                for track in call.tracks:
                    subject = f"audio.{call.call_id}.{track}"
                    assert [m.data for m in got if m.subject == subject] == call.sent[track], subject
        finally:
            await nc.close()

        # Both workers took calls (each one's own /metrics, on loopback), and the supervisor adds up.
        started = {i: total(await scrape(url), "sgw_streams_started_total") for i, (_, url) in up.items()}
        assert all(n > 0 for n in started.values()), started
        assert sum(started.values()) == CALLS
        combined = await scrape(gw.internal_url)
        assert total(combined, "sgw_frames_received_total") == sent
        assert total(combined, "sgw_streams_started_total") == CALLS
        assert total(combined, "sgw_workers") == 2
        for worker in ("0", "1"):
            assert total(combined, "sgw_worker_up", worker=worker) == 1
            assert total(combined, "sgw_ready", worker=worker) == 1, "per-worker state keeps a worker label"
        assert {f.name for f in combined} >= {"sgw_workers", "sgw_worker_up", "sgw_worker_restarts"}

        gw.send_signal(signal.SIGTERM)
        assert await gw.wait(60) == 0
        for pid, _ in up.values():
            assert not alive(pid), f"worker pid {pid} outlived the supervisor"
        assert "Traceback" not in gw.text()


async def test_sigterm_turns_unready_at_once_and_lets_live_calls_finish(nats_server: EmbeddedNats) -> None:
    env = {**LOOPBACK, "SGW_NATS__URL": nats_server.url, "SGW_SHUTDOWN__DRAIN_SECONDS": "60"}
    async with supervisor(env) as gw:
        await wait_ready(gw.internal_url)
        calls = asyncio.create_task(
            simulate(SimulateOptions(url=gw.ws_url, calls=6, track="inbound", duration=4.0, realtime=True))
        )
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            while total(await scrape(gw.internal_url), "sgw_streams_active") < 6:
                assert loop.time() < deadline, "the calls never became active"
                await asyncio.sleep(0.05)
            gw.send_signal(signal.SIGTERM)
            while (await get(f"{gw.internal_url}/readyz"))[0] != 503:
                assert loop.time() < deadline, "/readyz stayed 200 after SIGTERM"
                await asyncio.sleep(0.01)
            status, text = await get(f"{gw.internal_url}/readyz")
            assert (status, json.loads(text)["reasons"]) == (503, ["draining"])
            assert not calls.done(), "the calls were still live when the supervisor turned unready"
            report = await asyncio.wait_for(calls, 60)
        finally:
            if not calls.done():
                calls.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await calls
        assert_calls_ended_normally(report)
        assert await gw.wait(60) == 0


async def test_a_killed_worker_is_restarted_and_counted(nats_server: EmbeddedNats) -> None:
    async with supervisor({**LOOPBACK, "SGW_NATS__URL": nats_server.url}) as gw:
        await wait_ready(gw.internal_url)
        before = await scrape(gw.internal_url)
        assert total(before, "sgw_worker_restarts_total") == 0
        old_pid, _ = workers_up(gw)[0]
        os.kill(old_pid, signal.SIGKILL)
        await eventually(lambda: workers_up(gw)[0][0] != old_pid, timeout=60, what="worker 0 restarted with a new pid")
        assert f"worker 0 (pid {old_pid}) exited with code -9" in gw.text()
        await wait_ready(gw.internal_url)
        after = await scrape(gw.internal_url)
        assert total(after, "sgw_worker_restarts_total", worker="0") == 1
        assert total(after, "sgw_worker_restarts_total", worker="1") == 0
        assert total(after, "sgw_worker_up", worker="0") == 1
        report = await simulate(SimulateOptions(url=gw.ws_url, calls=8, track="inbound", duration=0.2, realtime=False))
        assert_calls_ended_normally(report)
        gw.send_signal(signal.SIGTERM)
        assert await gw.wait(60) == 0


async def test_a_worker_that_cannot_start_stops_the_start_up() -> None:
    # Bound, never listening: connecting to it is refused at once, so the workers fail fast.
    with socket.socket() as refused:
        refused.bind(("127.0.0.1", 0))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SGW_")},
            **LOOPBACK,
            "SGW_NATS__URL": f"nats://127.0.0.1:{refused.getsockname()[1]}",
            "SGW_NATS__INITIAL_CONNECT_TIMEOUT": "0.5",
        }
        proc = await asyncio.create_subprocess_exec(
            *SERVE,
            "--workers",
            "2",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=REPO,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 90)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    stderr = err.decode()
    assert proc.returncode == 2, stderr
    assert re.search(r"streamgw: worker \d exited with code 2 during start-up", stderr), stderr
    assert "SGW_NATS" in stderr, "the worker's own configuration error is shown"
    assert "stream-gateway is up" not in out.decode()


# ---- the supervisor's pure parts ---------------------------------------------------------------


def test_workers_zero_means_one_per_usable_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_workers(3) == 3
    assert resolve_workers(0) == len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    assert resolve_workers(0) == 1


def test_workers_get_the_supervisors_settings_and_their_own_overrides(tmp_path: Path) -> None:
    """Flags are settings too: a worker must not lose `--routes` or `--log-format` because it was
    started without them."""
    settings = load_settings(
        {"SGW_BUFFER__MAX_FRAMES": "3000", "SGW_OBSERVABILITY__SECRET_PARAMETERS": "pin,token"},
        overrides={
            "server.workers": 4,
            "server.port": 0,
            "routing.file": tmp_path / "routes.yaml",
            "observability.log_format": "json",
        },
    )
    env = worker_environment(settings, port=41000, nats_url="nats://127.0.0.1:4222")
    worker = load_settings({k: v for k, v in env.items() if k.startswith("SGW_")})
    expected = dataclasses.replace(
        settings,
        server=dataclasses.replace(
            settings.server, workers=1, reuse_port=True, port=41000, internal_host="127.0.0.1", internal_port=0
        ),
        nats=dataclasses.replace(settings.nats, url="nats://127.0.0.1:4222"),
    )
    assert worker == expected
    assert isinstance(worker, Settings)
    assert env["PATH"], "the rest of the environment is passed through"


def test_supervisor_metric_names_are_what_it_exports() -> None:
    registry = Supervisor(load_settings({}), 2).registry
    exported = {f"{m.name}_total" if m.type == "counter" else m.name for m in registry.collect()}
    assert exported == SUPERVISOR_METRIC_NAMES

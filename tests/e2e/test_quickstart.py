"""The README's quick start, for real: `streamgw serve` (embedded NATS) as a process, simulated
SignalWire calls, `tap` writing WAV files that decode back to the audio that was sent, SIGTERM."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.audio import alaw_decode, read_wav, ulaw_decode, unpack_l16le
from gateway.tools.simulate import SimulateOptions, simulate
from gateway.tools.tap import TapOptions, tap

REPO = Path(__file__).parents[2]
STREAMGW = [sys.executable, "-m", "gateway"]


@dataclass
class ServeProcess:
    proc: asyncio.subprocess.Process
    ws_url: str
    internal_url: str
    nats_url: str
    banner: str


async def start_serve(*args: str, env: dict[str, str] | None = None) -> ServeProcess:
    proc = await asyncio.create_subprocess_exec(
        *STREAMGW,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--internal-port",
        "0",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("SGW_")}, **(env or {})},
        cwd=REPO,
    )
    assert proc.stdout is not None
    banner: list[str] = []

    async def read_banner() -> None:
        assert proc.stdout is not None
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise AssertionError("streamgw serve exited:\n" + "".join(banner))
            banner.append(line)
            if "streamgw tap" in line:
                return

    await asyncio.wait_for(read_banner(), 30)
    text = "".join(banner)
    ws = re.search(r"WebSocket : (\S+)", text)
    internal = re.search(r"internal  : (http://\S+)/metrics", text)
    nats_url = re.search(r"NATS      : (\S+)", text)
    assert ws and internal and nats_url, text
    return ServeProcess(proc, ws.group(1), internal.group(1), nats_url.group(1), text)


@pytest.fixture
async def quickstart() -> AsyncIterator[ServeProcess]:
    serve = await start_serve()
    try:
        yield serve
    finally:
        if serve.proc.returncode is None:
            serve.proc.kill()
            await serve.proc.wait()


def decode(payload: bytes, codec: str) -> list[int]:
    if codec.startswith("PCMU"):
        return list(ulaw_decode(payload))
    if codec.startswith("PCMA"):
        return list(alaw_decode(payload))
    return list(unpack_l16le(payload))


@pytest.mark.parametrize("codec", ["PCMU", "L16@16000"])
async def test_quickstart_serve_simulate_tap_wav_and_sigterm(
    quickstart: ServeProcess, tmp_path: Path, codec: str
) -> None:
    assert "audio.{call_id}.{track}" in quickstart.banner  # the banner says what the default route does
    assert "streamgw simulate" in quickstart.banner and "streamgw tap" in quickstart.banner
    ready = asyncio.Event()
    wav_dir = tmp_path / "wav"
    tap_task = asyncio.create_task(
        tap(
            TapOptions(nats_url=quickstart.nats_url, wav_dir=wav_dir, calls=2, quiet=True, duration=60),
            io.StringIO(),
            ready=ready,
        )
    )
    await asyncio.wait_for(ready.wait(), 10)
    report = await simulate(
        SimulateOptions(
            url=quickstart.ws_url, calls=2, track="both", codec=codec, duration=0.5, realtime=False, signal="speech"
        )
    )
    tapped = await asyncio.wait_for(tap_task, 60)
    for call in report.calls:
        assert call.close_code == 1000
        seen = tapped.call(call.call_id)
        for track in ("inbound", "outbound"):
            stats = seen.tracks[track]
            assert (stats.frames, stats.gaps, stats.duplicates) == (len(call.sent[track]), 0, 0)
            wav = read_wav(wav_dir / f"{call.call_id}-{track}.wav")
            assert wav.sample_rate == (8000 if codec == "PCMU" else 16000)
            expected = [s for payload in call.sent[track] for s in decode(payload, codec)]
            assert list(wav.samples) == expected
            assert max(abs(s) for s in expected) > 1000  # real audio, not silence
    quickstart.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(quickstart.proc.wait(), 30) == 0


def test_cli_reports_configuration_errors_with_exit_code_2() -> None:
    result = subprocess.run(
        [*STREAMGW, "serve", "--port", "9090", "--internal-port", "9090"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 2
    assert "SGW_SERVER__INTERNAL_PORT" in result.stderr
    env = {**os.environ, "SGW_NATS__URLL": "nats://x"}
    result = subprocess.run(
        [*STREAMGW, "check-config"], capture_output=True, text=True, timeout=60, cwd=REPO, env=env, check=False
    )
    assert result.returncode == 2 and "SGW_NATS__URLL" in result.stderr


def test_print_env_defaults_lists_every_setting() -> None:
    result = subprocess.run(
        [*STREAMGW, "print-env-defaults"], capture_output=True, text=True, timeout=60, cwd=REPO, check=True
    )
    assert "SGW_NATS__URL=" in result.stdout and "SGW_SHUTDOWN__DRAIN_SECONDS=30.0" in result.stdout


@pytest.mark.parametrize("mode", ["repo-root", "pythonpath", "installed"])
def test_stdlib_operator_is_never_shadowed(mode: str, tmp_path: Path) -> None:
    """docs/design.md section 2: `operator/` is a folder, never an importable `operator` package."""
    code = "import collections, operator, sgw_operator; operator.itemgetter(0); print(operator.__file__)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    cwd: Path = tmp_path
    if mode == "repo-root":
        cwd = REPO
    elif mode == "pythonpath":
        env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=cwd, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert str(REPO) not in result.stdout
